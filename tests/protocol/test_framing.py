"""FrameDecoder and the encoders: every split of the stream, limits, garbage."""

from __future__ import annotations

import struct

import msgpack
import pytest

from protocol import (
    DEFAULT_MAX_FRAME,
    HARD_MAX_FRAME,
    ErrorCode,
    ErrorInfo,
    FrameDecoder,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    encode,
    encode_request,
    encode_response,
    frame,
)

MESSAGES: list[Request | Response] = [
    Request(0, "ping", []),
    Request(1, "get", [b"k"]),
    Request(2, "put", [b"k", b"v" * 300, {"ttl": 1.5}]),
    Request(0xFFFFFFFF, "mput", [{b"a": b"1", b"b": b""}]),
    Request(7, "batch", [[["put", b"k", b"v"], ["delete", b"k"]]]),
    Request(8, "scan", [{"prefix": b"app:", "cursor": None, "count": 10}]),
    Response(1, None, b"value"),
    Response(2, None, None),
    Response(3, None, [b"next", [b"a", b"b"]]),
    Response(4, None, {"keys": 3, "files": [{"id": 1, "size": 10}]}),
    Response(5, ErrorInfo.from_code(ErrorCode.KEY_TOO_LARGE, "key of 70000 bytes"), None),
    Response(6, ErrorInfo(999, "FUTURE_CODE", "a code this version does not know"), None),
]
STREAM = b"".join(encode(m) for m in MESSAGES)


def _frame_obj(obj: object) -> bytes:
    return frame(msgpack.packb(obj, use_bin_type=True))


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}-{m.msgid}")
def test_round_trip_each_message(message: Request | Response) -> None:
    assert FrameDecoder().feed(encode(message)) == [message]


def test_whole_stream_at_once() -> None:
    assert FrameDecoder().feed(STREAM) == MESSAGES


def test_byte_by_byte() -> None:
    d = FrameDecoder()
    got: list[Request | Response] = []
    for i in range(len(STREAM)):
        got += d.feed(STREAM[i : i + 1])
        assert d.buffered <= 4 + d.max_frame
    assert got == MESSAGES
    assert d.buffered == 0


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 1000])
def test_every_chunk_size(size: int) -> None:
    d = FrameDecoder()
    got: list[Request | Response] = []
    for i in range(0, len(STREAM), size):
        got += d.feed(STREAM[i : i + size])
    assert got == MESSAGES


@pytest.mark.parametrize(
    "kind", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"]
)
def test_accepts_any_buffer_type(kind: type) -> None:
    d = FrameDecoder()
    half = len(STREAM) // 2 + 3
    assert d.feed(kind(STREAM[:half])) + d.feed(kind(STREAM[half:])) == MESSAGES


def test_trailing_partial_frame_is_kept_until_complete() -> None:
    d = FrameDecoder()
    tail = encode_request(99, "get", [b"late"])
    assert d.feed(STREAM + tail[:6]) == MESSAGES
    assert d.buffered == 6
    assert d.feed(tail[6:]) == [Request(99, "get", [b"late"])]


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(b"\xff\xff\xff\xff", id="oversize-header"),
        pytest.param(b"\x00\x00\x00\x00", id="empty-frame"),
        pytest.param(b"\x00\x00\x00\x01\xc1", id="reserved-byte"),
        pytest.param(_frame_obj({"a": 1}), id="map-body"),
        pytest.param(_frame_obj([2, 1, "x", []]), id="unknown-type"),
        pytest.param(_frame_obj([True, 1, "x", []]), id="bool-type"),
    ],
)
def test_trailing_junk_keeps_good_messages(junk: bytes) -> None:
    d = FrameDecoder()
    with pytest.raises(RemoteProtocolError) as info:
        d.feed(STREAM + junk)
    assert info.value.messages == MESSAGES
    with pytest.raises(RemoteProtocolError):  # the decoder stays dead
        d.feed(encode_request(1, "ping", []))
    assert d.failed


def test_oversize_refused_from_header_alone() -> None:
    d = FrameDecoder(max_frame=1000)
    d.feed(b"\x00\x00")
    with pytest.raises(RemoteProtocolError) as info:
        d.feed(b"\x03\xe9")  # 1001: refused before a single body byte arrives
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    assert d.buffered == 0


def test_exact_max_frame_is_accepted() -> None:
    body = msgpack.packb([1, 1, None, b"x" * 990])
    d = FrameDecoder(max_frame=len(body))
    assert d.feed(frame(body))[0].result == b"x" * 990  # type: ignore[union-attr]


def test_large_frame_in_pieces_is_never_rebuffered() -> None:
    value = b"v" * (3 * 1024 * 1024)
    wire = encode_response(5, value)
    d = FrameDecoder()
    got: list[Request | Response] = []
    for i in range(0, len(wire), 65536):
        got += d.feed(wire[i : i + 65536])
        assert d.buffered <= len(wire)
    assert got == [Response(5, None, value)]


def test_following_frames_are_not_buffered_with_a_finished_one() -> None:
    d = FrameDecoder()
    first = encode_request(1, "get", [b"a"])
    d.feed(first[:5])
    out = d.feed(first[5:] + STREAM)
    assert out == [Request(1, "get", [b"a"]), *MESSAGES]
    assert d.buffered == 0


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param([0, -1, "get", []], id="negative-msgid"),
        pytest.param([0, 2**32, "get", []], id="msgid-too-big"),
        pytest.param([0, 1.0, "get", []], id="float-msgid"),
        pytest.param([0, 1, b"get", []], id="bin-method"),
        pytest.param([0, 1, "get", {}], id="map-params"),
        pytest.param([1, 1, [100, "X"], None], id="short-error"),
        pytest.param([1, 1, [100, 5, "m"], None], id="int-error-name"),
        pytest.param([1, 1, "oops", None], id="str-error"),
        pytest.param([0, 1, "get"], id="three-elements"),
        pytest.param("hello", id="str-body"),
    ],
)
def test_bad_shapes_are_remote_errors(obj: object) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        FrameDecoder().feed(_frame_obj(obj))
    assert info.value.code is ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\x91" * 5000 + b"\xc0", id="deep-nesting"),
        pytest.param(b"\xdd\xff\xff\xff\xff", id="huge-declared-array"),
        pytest.param(b"\xc6\x7f\xff\xff\xff", id="huge-declared-bin"),
        pytest.param(b"\xa2\xff\xfe", id="invalid-utf8-str"),
        pytest.param(b"\x81\x91\x01\x01", id="unhashable-map-key"),
        pytest.param(b"\x94\x00\x01\xa3get\x90\xc0", id="trailing-byte-in-body"),
        pytest.param(b"\xd6\xff\x00", id="short-timestamp-ext"),
    ],
)
def test_msgpack_errors_become_remote_errors(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        FrameDecoder().feed(frame(body))


def test_feed_raw_returns_bodies() -> None:
    assert FrameDecoder().feed_raw(encode_response(3, b"x")) == [[1, 3, None, b"x"]]


def test_max_frame_is_validated() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=HARD_MAX_FRAME + 1)
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=0)
    assert DEFAULT_MAX_FRAME < HARD_MAX_FRAME


def test_first_byte_of_any_frame_is_below_0x20() -> None:
    assert struct.pack(">I", HARD_MAX_FRAME)[0] < 0x20


@pytest.mark.parametrize(
    ("call", "code"),
    [
        pytest.param(lambda: encode_request(-1, "get", []), ErrorCode.PROTOCOL_ERROR, id="msgid"),
        pytest.param(
            lambda: encode_request(1, 5, []),  # type: ignore[arg-type]
            ErrorCode.PROTOCOL_ERROR,
            id="method",
        ),
        pytest.param(
            lambda: encode_request(1, "get", b"k"),  # type: ignore[arg-type]
            ErrorCode.PROTOCOL_ERROR,
            id="params",
        ),
        pytest.param(
            lambda: encode_request(1, "get", [object()]), ErrorCode.PROTOCOL_ERROR, id="unencodable"
        ),
        pytest.param(
            lambda: encode_request(1, "put", [b"k", b"v" * 200], max_frame=100),
            ErrorCode.FRAME_TOO_LARGE,
            id="too-large",
        ),
        pytest.param(lambda: encode_response(2**32), ErrorCode.PROTOCOL_ERROR, id="resp-msgid"),
        pytest.param(
            lambda: encode_response(1, error="x"),  # type: ignore[arg-type]
            ErrorCode.PROTOCOL_ERROR,
            id="resp-error",
        ),
        pytest.param(
            lambda: encode("x"),  # type: ignore[arg-type]
            ErrorCode.PROTOCOL_ERROR,
            id="not-a-message",
        ),
    ],
)
def test_encoders_raise_local_errors(call: object, code: ErrorCode) -> None:
    with pytest.raises(LocalProtocolError) as info:
        call()  # type: ignore[operator]
    assert info.value.code is code


def test_encoder_recovers_after_an_unencodable_value() -> None:
    with pytest.raises(LocalProtocolError):
        encode_request(1, "get", [object()])
    assert FrameDecoder().feed(encode_request(2, "get", [b"k"])) == [Request(2, "get", [b"k"])]


def test_error_response_drops_result() -> None:
    err = ErrorInfo.from_code(ErrorCode.BUSY, "queue full")
    assert FrameDecoder().feed(encode_response(9, b"ignored", err)) == [Response(9, err, None)]


def test_str_keys_arrive_as_str_bin_as_bytes() -> None:
    (msg,) = FrameDecoder().feed(encode_request(1, "put", ["text", b"bin"]))
    assert isinstance(msg, Request)
    assert msg.params == ["text", b"bin"]
