"""The async client in a dozen lines: put, get, delete against a running server.

Run it (the server from `make run` listening on 127.0.0.1:7379):

    python examples/quickstart.py                  # or: --host H --port P
    BITCASK_PORT=7379 python examples/quickstart.py

Host, port and token come from --host/--port/--auth, else BITCASK_HOST,
BITCASK_PORT, BITCASK_AUTH. It makes three calls and exits; status 2 and one
line on stderr if the server cannot be reached. README.md shows `main()` below.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from client import ClientError, connect


async def main(host: str, port: int, auth: str | None) -> None:
    async with connect(host, port, auth=auth, timeout=5.0) as db:
        await db.put("message", "hello from asyncio")
        print(await db.get("message"))  # b'hello from asyncio'
        print(await db.delete("message"))  # True: it existed
        print(await db.get("message"))  # None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description="put, get and delete one key")
    parser.add_argument("--host", default=env.get("BITCASK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("BITCASK_PORT", "7379")))
    parser.add_argument("--auth", default=env.get("BITCASK_AUTH") or None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    try:
        asyncio.run(main(args.host, args.port, args.auth))
    except ClientError as exc:
        print(f"quickstart: {exc}", file=sys.stderr)
        sys.exit(2)
