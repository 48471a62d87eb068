"""The ceiling: the least a Python server can do per request (uvloop, a dict, msgpack).

One asyncio.Protocol per connection parses length-prefixed msgpack frames
`[0, msgid, method, params]`, serves get/put from a dict and answers `[1, msgid, nil,
result]`. No validation, no ordering rules, no durability: bench/server.py measures
bitcask-server against this. `python -m bench.ceiling_server --port 7399`
"""

from __future__ import annotations

import argparse
import asyncio
import struct

import msgpack
import uvloop

_unpack, _pack = msgpack.unpackb, msgpack.Packer(use_bin_type=True).pack
_len = struct.Struct(">I")


class Ceiling(asyncio.Protocol):
    def __init__(self, store: dict[bytes, bytes]) -> None:
        self.store = store
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, end, out, store = 0, len(buf), [], self.store
        while end - pos >= 4:
            (n,) = _len.unpack_from(buf, pos)
            if end - pos - 4 < n:
                break
            _, msgid, method, params = _unpack(buf[pos + 4 : pos + 4 + n], raw=False)
            pos += 4 + n
            result: bytes | bool | None = None
            if method == "get":
                result = store.get(params[0])
            elif method == "put":
                store[params[0]] = params[1]
                result = True
            body = _pack([1, msgid, None, result])
            out.append(_len.pack(len(body)) + body)
        self.buf = buf[pos:]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]


async def serve(host: str, port: int) -> None:
    store: dict[bytes, bytes] = {}
    server = await asyncio.get_running_loop().create_server(lambda: Ceiling(store), host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7399)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
