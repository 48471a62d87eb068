"""Hypothesis properties of the frame decoder (the Redis reader's are in test_resp_reader.py)."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    ErrorCode,
    ErrorInfo,
    FrameDecoder,
    RemoteProtocolError,
    Request,
    Response,
    encode,
    frame,
)

settings.register_profile("protocol", max_examples=300, deadline=None)
settings.load_profile("protocol")

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
msgids = st.integers(0, 2**32 - 1)
requests = st.builds(Request, msgids, st.text(max_size=12), st.lists(values, max_size=4))
error_infos = st.builds(
    ErrorInfo, st.integers(0, 2**31), st.text(max_size=20), st.text(max_size=40)
)
responses = st.builds(Response, msgids, st.none() | error_infos, values)
messages = st.lists(requests | responses, max_size=8)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to itself (floats may be NaN)."""
    return msgpack.packb(a.to_obj()) == msgpack.packb(b.to_obj())


def _feed_in_pieces(d: FrameDecoder, data: bytes, cuts: list[int]) -> list[Any]:
    got: list[Any] = []
    prev = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        got += d.feed(data[prev:cut])
        prev = cut
    return got


@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_any_bytes_give_messages_or_remote_error(data: bytes, cuts: list[int]) -> None:
    d = FrameDecoder(max_frame=4096)
    try:
        got = _feed_in_pieces(d, data, cuts)
    except RemoteProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        return
    assert all(type(m) in (Request, Response) for m in got)


@given(st.binary(max_size=300))
def test_any_body_in_a_valid_frame(body: bytes) -> None:
    try:
        FrameDecoder().feed(frame(body) if body else b"\x00\x00\x00\x00")
    except RemoteProtocolError:
        pass


@given(values)
def test_any_msgpack_value_as_a_frame(value: Any) -> None:
    try:
        FrameDecoder().feed(frame(msgpack.packb(value, use_bin_type=True)))
    except RemoteProtocolError:
        pass


@given(messages, st.lists(st.integers(0, 5000), max_size=8))
def test_round_trip_any_split(msgs: list[Request | Response], cuts: list[int]) -> None:
    wire = b"".join(encode(m) for m in msgs)
    got = _feed_in_pieces(FrameDecoder(), wire, cuts)
    assert len(got) == len(msgs)
    assert all(_same(a, b) for a, b in zip(got, msgs, strict=True))


@given(messages, st.binary(min_size=1, max_size=50))
def test_trailing_junk_never_loses_good_messages(msgs: list[Any], junk: bytes) -> None:
    wire = b"".join(encode(m) for m in msgs)
    d = FrameDecoder(max_frame=1 << 16)
    try:
        got = d.feed(wire + junk)
    except RemoteProtocolError as exc:
        got = list(exc.messages)
    assert all(_same(a, b) for a, b in zip(got, msgs, strict=False))
    assert len(got) >= len(msgs)
