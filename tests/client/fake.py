"""A small fake bitcask server for client tests that need precise timing.

It speaks real frames through protocol/ on 127.0.0.1 (asyncio.start_server), keeps
a dict, and lets a test script its behaviour: delay or withhold replies per
method, answer out of order, drop connections, send garbage or msgid-0 errors,
refuse connections. Every request it sees is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from protocol import (
    ErrorCode,
    ErrorInfo,
    FrameDecoder,
    RemoteProtocolError,
    Request,
    encode_response,
)

Handler = Callable[[Request], Awaitable[Any]]


class Reply(Exception):
    """Raise from a custom handler to answer with an error."""

    def __init__(self, code: int, name: str, message: str = "") -> None:
        super().__init__(message)
        self.info = ErrorInfo(code, name, message)


class FakeServer:
    def __init__(self) -> None:
        self.store: dict[bytes, bytes] = {}
        self.requests: list[Request] = []
        self.delays: dict[str, float] = {}  # method -> seconds before replying
        self.withhold: set[str] = set()  # methods never answered
        self.handlers: dict[str, Handler] = {}  # method -> custom coroutine
        self.hello_reply: dict[str, Any] = {
            "server": "bitcask",
            "version": "fake",
            "protocol": 1,
            "auth_required": False,
            "authenticated": True,
            "limits": {
                "max_key_size": 64,
                "max_value_size": 1024,
                "max_frame": 1 << 20,
                "max_batch": 100,
            },
        }
        self.token: bytes | None = None
        self.refuse_with: ErrorInfo | None = None  # sent with msgid 0, then close
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, port: int = 0) -> FakeServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        self.drop_all()
        for t in list(self._tasks):
            t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def drop_all(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    def send_raw(self, data: bytes) -> None:
        for w in self.writers:
            w.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refuse_with is not None:
            writer.write(encode_response(0, None, self.refuse_with))
            await writer.drain()
            writer.close()
            return
        self.writers.append(writer)
        decoder = FrameDecoder()
        state = {"authed": self.token is None}
        try:
            while data := await reader.read(65536):
                try:
                    requests = decoder.feed(data)
                except RemoteProtocolError:
                    writer.transport.abort()
                    return
                for req in requests:
                    assert isinstance(req, Request)
                    self.requests.append(req)
                    task = asyncio.create_task(self._answer(req, writer, state))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if writer in self.writers:
                self.writers.remove(writer)
            writer.transport.abort()

    async def _answer(
        self, req: Request, writer: asyncio.StreamWriter, state: dict[str, bool]
    ) -> None:
        if req.method in self.withhold:
            return
        delay = self.delays.get(req.method, 0.0)
        if delay:
            await asyncio.sleep(delay)
        try:
            result = await self._result(req, state)
            frame = encode_response(req.msgid, result)
        except Reply as err:
            frame = encode_response(req.msgid, None, err.info)
        if not writer.transport.is_closing():
            writer.write(frame)

    async def _result(self, req: Request, state: dict[str, bool]) -> Any:
        m, p = req.method, req.params
        if m in self.handlers:
            return await self.handlers[m](req)
        if m == "hello":
            opts = p[0] if p else {}
            if "auth" in opts:
                if opts["auth"] != self.token:
                    raise Reply(201, "AUTH_FAILED", "bad token")
                state["authed"] = True
            return {**self.hello_reply, "authenticated": state["authed"],
                    "auth_required": self.token is not None}  # fmt: skip
        if m == "ping":
            return p[0] if p else "PONG"
        if not state["authed"]:
            raise Reply(int(ErrorCode.AUTH_REQUIRED), "AUTH_REQUIRED", "auth first")
        if m == "get":
            return self.store.get(p[0])
        if m == "put":
            self.store[p[0]] = p[1]
            return True
        if m == "delete":
            return self.store.pop(p[0], None) is not None
        if m == "exists":
            return p[0] in self.store
        if m == "mput":
            pairs = p[0].items() if isinstance(p[0], dict) else p[0]
            self.store.update((k, v) for k, v in pairs)
            return True
        if m == "batch":
            out: list[bool] = []
            for op in p[0]:
                if op[0] == "put":
                    self.store[op[1]] = op[2]
                    out.append(True)
                else:
                    out.append(self.store.pop(op[1], None) is not None)
            return out
        if m == "mget":
            return [self.store.get(k) for k in p[0]]
        raise Reply(int(ErrorCode.UNKNOWN_METHOD), "UNKNOWN_METHOD", m)


@contextlib.asynccontextmanager
async def fake_server() -> Any:
    srv = await FakeServer().start()
    try:
        yield srv
    finally:
        await srv.stop()
