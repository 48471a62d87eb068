"""A server's refusal line that arrives in the same read as replies before it.

The server drops a connection's unfinished request with one text line before the
close (--max-partial-input, --request-timeout: protocol/refusals.py). The client
recognised such a line only at the start of a read; after a reply in the same read
it took "-ERR" for a frame header and reported "frame of 759 MB exceeds the limit".
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from client import ConnectionLostError, connect
from protocol import FrameDecoder, RemoteProtocolError, Request, encode_response, frame
from protocol.refusals import PARTIAL_INPUT_LINE, REQUEST_TIMEOUT_LINE
from tests.client.fake import fake_server

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("line", [PARTIAL_INPUT_LINE, REQUEST_TIMEOUT_LINE])
async def test_a_refusal_after_a_reply_in_one_read_is_reported_as_sent(line: bytes) -> None:
    async with fake_server() as srv:
        first: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def get(req: Request) -> Any:
            first.set_result(req.msgid)
            await asyncio.Event().wait()  # answered by put, with the refusal

        async def put(req: Request) -> Any:
            # a put is not sent again on a new connection: its failure is what we read
            srv.send_raw(encode_response(await first, b"va") + line)
            srv.drop_all()
            await asyncio.Event().wait()

        srv.handlers.update(get=get, put=put)
        async with connect("127.0.0.1", srv.port) as c:
            a = asyncio.create_task(c.get(b"a"))
            await first
            b = asyncio.create_task(c.put(b"b", b"x"))
            assert await asyncio.wait_for(a, 10) == b"va"  # the reply before the line
            with pytest.raises(ConnectionLostError) as info:
                await asyncio.wait_for(b, 10)
        text = line[1:-2].decode()
        assert text in str(info.value), str(info.value)
        assert "exceeds the limit" not in str(info.value)


def test_the_decoder_keeps_the_bytes_from_the_bad_frame_on() -> None:
    good = frame(b"\x91\x01")  # msgpack [1]
    for chunks in ([good + PARTIAL_INPUT_LINE], [good + b"-E", b"RR rest"]):
        dec = FrameDecoder()
        got: list[Any] = []
        with pytest.raises(RemoteProtocolError) as info:
            for chunk in chunks:
                got += dec.feed_raw(chunk)
        assert got + info.value.messages == [[1]]
        assert info.value.unread.startswith(b"-E")
        assert info.value.unread in (PARTIAL_INPUT_LINE, b"-ERR rest")
