"""The refusal line: one line both dialects read, mapped back to an error code."""

from __future__ import annotations

from protocol import (
    TOO_MANY_CONNECTIONS_LINE,
    ErrorCode,
    FrameDecoder,
    encode_response,
    is_refusal,
    refusal_error,
)


def test_the_connection_limit_line_is_redis_own() -> None:
    assert TOO_MANY_CONNECTIONS_LINE == b"-ERR max number of clients reached\r\n"


def test_it_maps_to_too_many_connections() -> None:
    error = refusal_error(TOO_MANY_CONNECTIONS_LINE)
    assert error.code == ErrorCode.TOO_MANY_CONNECTIONS
    assert error.message == "max number of clients reached"


def test_other_text_lines_are_protocol_errors() -> None:
    error = refusal_error(b"-ERR something else\r\n")
    assert error.code == ErrorCode.PROTOCOL_ERROR and "something else" in error.message


def test_a_refusal_cannot_be_mistaken_for_a_frame() -> None:
    assert is_refusal(TOO_MANY_CONNECTIONS_LINE)
    frame = encode_response(1, True)
    assert not is_refusal(frame) and not is_refusal(b"")
    # read as a frame header, "-ERR" would announce 759 MB: over any max_frame
    assert int.from_bytes(TOO_MANY_CONNECTIONS_LINE[:4], "big") > FrameDecoder().max_frame
