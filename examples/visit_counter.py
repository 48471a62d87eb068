"""A small asyncio web app whose state lives in bitcask: a visit counter per page.

Run it (the server from `make run` listening on 127.0.0.1:7379):

    python examples/visit_counter.py               # demo: serve, visit itself, exit
    python examples/visit_counter.py --serve 60    # serve on :8080 for 60 s; try
                                                   #   curl http://127.0.0.1:8080/hello

Options: --host/--port/--auth of the bitcask server (else BITCASK_HOST,
BITCASK_PORT, BITCASK_AUTH), --web-port for the app (default 8080 with --serve,
a free port in the demo). It always ends by itself: the demo after its own
visits, --serve after the given number of seconds.

Routes: `GET /any/path` counts a visit to that path and answers
`visit #N to /any/path`; `GET /_counts` lists every counter (scan + mget).

Strategy: one `client.Client` (one TCP connection) is shared by every request
handler; calls from concurrent handlers are pipelined on it. Each visit is one
`incr`, decided by the server's single writer when it applies, so concurrent
visits never lose a count, whether they come from one app process or from
many (a get-then-put would lose visits when two requests interleave). The HTTP
handling is deliberately minimal (stdlib asyncio streams, one request per
connection, GET only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from urllib.parse import unquote

from client import Client, ClientError, connect

PREFIX = "visits:"
HEAD_LIMIT = 16 * 1024  # bytes of request line + headers we accept (else 400)
HEAD_TIMEOUT = 5.0  # seconds a client gets to send its request head


class VisitCounter:
    """The application: HTTP requests in, counters in bitcask."""

    def __init__(self, db: Client) -> None:
        self.db = db

    async def visit(self, path: str) -> int:
        """Count one visit to `path` (atomically, on the server); return the new count."""
        return await self.db.incr(PREFIX + path)

    async def counts(self) -> dict[str, int]:
        """Every counter, by path, in key order."""
        keys = [key async for key in self.db.scan(prefix=PREFIX, count=100)]
        values = await self.db.mget(keys) if keys else []
        return {k.decode()[len(PREFIX) :]: int(v) for k, v in zip(keys, values, strict=True) if v}

    async def reset(self) -> None:
        """Delete every counter (the demo starts from zero)."""
        async with self.db.batch() as b:
            async for key in self.db.scan(prefix=PREFIX, count=100):
                b.delete(key)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.1 request per connection, then close."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "GET":
                status, body = "405 Method Not Allowed", "only GET\n"
            else:
                status, body = await self.respond(unquote(target.split("?", 1)[0]))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, body = "400 Bad Request", "bad request\n"
        except ClientError as exc:  # the database is down or refused: say so, stay up
            status, body = "503 Service Unavailable", f"database unavailable: {exc}\n"
        data = body.encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def respond(self, path: str) -> tuple[str, str]:
        if path == "/_counts":
            lines = [f"{count:6d}  {page}" for page, count in (await self.counts()).items()]
            return "200 OK", "".join(line + "\n" for line in lines)
        return "200 OK", f"visit #{await self.visit(path)} to {path}\n"


async def http_get(port: int, path: str) -> str:
    """A tiny HTTP client for the demo: GET `path` from the app, return the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return response.split(b"\r\n\r\n", 1)[1].decode()


async def demo(app: VisitCounter, port: int) -> None:
    """Visit the app like a browser would, then print what it says."""
    await app.reset()
    for path in ("/", "/", "/about"):
        print(await http_get(port, path), end="")
    # 20 visitors at once: each increment is atomic, none is lost
    await asyncio.gather(*(http_get(port, "/busy") for _ in range(20)))
    print(await http_get(port, "/_counts"), end="")


async def main(args: argparse.Namespace) -> None:
    async with connect(args.host, args.port, auth=args.auth, timeout=5.0) as db:
        app = VisitCounter(db)
        web_port = args.web_port if args.web_port is not None else (8080 if args.serve else 0)
        server = await asyncio.start_server(app.handle, "127.0.0.1", web_port, limit=HEAD_LIMIT)
        async with server:
            port = server.sockets[0].getsockname()[1]
            if args.serve:
                print(f"visit counter on http://127.0.0.1:{port}/ for {args.serve:g} s", flush=True)
                await asyncio.sleep(args.serve)
            else:
                await demo(app, port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description="a visit counter web app on bitcask")
    parser.add_argument("--host", default=env.get("BITCASK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("BITCASK_PORT", "7379")))
    parser.add_argument("--auth", default=env.get("BITCASK_AUTH") or None)
    parser.add_argument("--web-port", type=int, default=None, help="the app's HTTP port")
    parser.add_argument(
        "--serve", type=float, default=0, metavar="SECONDS", help="serve, then exit"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args()))
    except ClientError as exc:
        print(f"visit_counter: {exc}", file=sys.stderr)
        sys.exit(2)
