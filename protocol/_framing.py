"""Length-prefixed msgpack framing: `FrameDecoder` and the frame encoders.

Strategy / invariants:
- A frame is a 4-byte unsigned big-endian length N (1 <= N <= max_frame) and N
  bytes holding exactly one msgpack object. max_frame < 512 MiB, so the first
  byte of every binary frame is below 0x20 (that is how a server tells binary
  from inline text).
- The decoder holds at most one incomplete frame: complete frames are decoded
  straight from the caller's chunk; only the unfinished tail is copied into
  `_buf`. A header is checked against max_frame as soon as its 4 bytes are
  known, before any byte of that frame's body is kept. A buffered partial frame
  only ever takes the bytes it still lacks from the next chunk, so a large frame
  arriving in many pieces is copied once, not once per piece.
- Each body is decoded with `msgpack.unpackb` on its exact slice, which also
  proves the body is exactly one object (trailing bytes raise). Measured against
  a streaming `msgpack.Unpacker` with the same length checks (docs/protocol.md,
  section 10): unpackb on exact slices was ~20% faster per frame.
- Everything that can go wrong with peer bytes surfaces as RemoteProtocolError;
  afterwards the decoder is dead and re-raises that error on every feed().
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from protocol.messages import (
    MAX_MSGID,
    REQUEST,
    RESPONSE,
    ErrorInfo,
    Request,
    Response,
    message_from_obj,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HARD_MAX_FRAME",
    "FrameDecoder",
    "encode",
    "encode_request",
    "encode_response",
    "frame",
    "reply_limit",
]

DEFAULT_MAX_FRAME = 64 * 1024 * 1024 + 1024 * 1024
"""64 MiB (the default largest value) plus 1 MiB of room for key and envelope."""
HARD_MAX_FRAME = 512 * 1024 * 1024 - 1
"""No configuration may allow a frame of 512 MiB or more (first byte stays < 0x20)."""


def reply_limit(max_frame: int) -> int:
    """The largest reply frame of a server whose requests may be ``max_frame`` bytes.

    Never below DEFAULT_MAX_FRAME (a server with a small request limit still returns
    a default-sized value), and the request limit itself above it (a value that fit
    in a put fits in the get that returns it). Clients accept replies this large.

    Example:
        >>> reply_limit(4096) == DEFAULT_MAX_FRAME
        True
    """
    return max(max_frame, DEFAULT_MAX_FRAME)


_HEADER = struct.Struct(">I")
_header_from = _HEADER.unpack_from
_header_pack = _HEADER.pack
_unpackb = msgpack.unpackb
# One Packer reused for every frame: measured ~1.8x faster than msgpack.packb,
# which builds a Packer (and its buffer) per call. Packer.pack() resets its buffer
# after each call and after a failed call, and plain msgpack types never call back
# into Python code, so one pack() cannot interleave with another.
# A Packer keeps its buffer at the largest size it ever packed: after a frame over
# PACKER_KEEP it is replaced, so one 64 MiB message does not pin 64 MiB for the
# life of the process (measured: RSS +64 MiB after one such pack, for good).
_pack = msgpack.Packer(use_bin_type=True).pack
PACKER_KEEP = 1024 * 1024


def _renew_packer() -> None:
    global _pack
    _pack = msgpack.Packer(use_bin_type=True).pack


def _check_max_frame(max_frame: int) -> int:
    if type(max_frame) is not int or not 1 <= max_frame <= HARD_MAX_FRAME:
        raise ValueError(f"max_frame must be an int in 1..{HARD_MAX_FRAME}, got {max_frame!r}")
    return max_frame


class FrameDecoder:
    """Turns a byte stream into messages; accepts any split of the stream.

    Args:
        max_frame: the largest frame body accepted, in bytes (default
            DEFAULT_MAX_FRAME; must stay below 512 MiB).

    Raises:
        ValueError: max_frame out of range.

    Example:
        >>> d = FrameDecoder()
        >>> wire = encode_request(1, "ping", [])
        >>> d.feed(wire[:3]), d.feed(wire[3:])
        ([], [Request(msgid=1, method='ping', params=[])])
    """

    __slots__ = ("_buf", "_error", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = _check_max_frame(max_frame)
        # the unfinished tail of the stream: at most one partial frame
        self._buf = bytearray()
        # set once the peer broke the protocol; the decoder is dead from then on
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (always <= 4 + max_frame)."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        """True once a feed() raised RemoteProtocolError."""
        return self._error is not None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Request | Response]:
        """Take the next bytes of the stream; return every message now complete.

        Args:
            data: any number of bytes, split anywhere (b"" is fine).

        Returns:
            The complete messages, in stream order (possibly none).

        Raises:
            RemoteProtocolError: FRAME_TOO_LARGE as soon as a header announces a
                frame over max_frame (before its body is buffered); PROTOCOL_ERROR
                for an empty frame, bad msgpack or a wrong message shape. The
                messages decoded before the bad bytes are in `exc.messages`.
                After it, every feed() raises again.
        """
        try:
            objs = self.feed_raw(data)
        except RemoteProtocolError as exc:
            exc.messages = self._convert_prefix(exc.messages, exc)
            raise
        try:
            return [message_from_obj(obj) for obj in objs]
        except RemoteProtocolError as exc:
            good = self._convert_prefix(objs, None)
            err = self._error
            assert err is not None
            raise RemoteProtocolError(err.message, err.code, good) from exc

    def _convert_prefix(
        self, objs: list[Any], pending: RemoteProtocolError | None
    ) -> list[Request | Response]:
        """Convert objects up to the first bad shape, which becomes the decoder's error."""
        good: list[Request | Response] = []
        for obj in objs:
            try:
                good.append(message_from_obj(obj))
            except RemoteProtocolError as exc:
                self._error = RemoteProtocolError(exc.message, exc.code)
                if pending is not None:
                    pending.args = exc.args
                    pending.code = exc.code
                break
        return good

    def _die(
        self, message: str, code: ErrorCode, decoded: list[Any], unread: bytes = b""
    ) -> RemoteProtocolError:
        self._buf = bytearray()
        self._error = RemoteProtocolError(message, code)
        return RemoteProtocolError(message, code, decoded, unread)

    def _check_header(self, n: int, decoded: list[Any], unread: Any = b"") -> None:
        # ``unread``: the bad frame's bytes to the end of the chunk (only read here, off
        # the hot path), kept on the error for a client to recognise a refusal line.
        if n > self.max_frame:
            raise self._die(
                f"frame of {n} bytes exceeds the limit of {self.max_frame}",
                ErrorCode.FRAME_TOO_LARGE,
                decoded,
                bytes(unread),
            )
        if n == 0:
            raise self._die("empty frame", ErrorCode.PROTOCOL_ERROR, decoded, bytes(unread))

    def _body_error(self, exc: Exception, decoded: list[Any]) -> RemoteProtocolError:
        return self._die(
            f"frame body is not one msgpack object: {type(exc).__name__}: {exc}",
            ErrorCode.PROTOCOL_ERROR,
            decoded,
        )

    def feed_raw(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Like `feed`, but return each frame's decoded msgpack object, shape unchecked.

        The framing core. For hot paths that check the message shape themselves (the
        server's BinaryDialect checks requests, the client checks `[1, msgid, error,
        result]`); pass an object to `message_from_obj` for the full check. Framing and
        msgpack errors raise RemoteProtocolError exactly as in `feed`, with the objects
        decoded before them in `exc.messages`.
        """
        if self._error is not None:
            raise RemoteProtocolError(self._error.message, self._error.code)
        out: list[Any] = []
        buf = self._buf
        if buf:
            # Finish the buffered frame first, taking only the bytes it lacks.
            view = memoryview(data)
            if len(buf) < 4:
                take = 4 - len(buf)
                buf += view[:take]
                view = view[take:]
                if len(buf) < 4:
                    return out
                n = _header_from(buf)[0]
                if n > self.max_frame or n == 0:  # the copy only on the error path
                    self._check_header(n, out, bytes(buf) + bytes(view))
            need = 4 + _header_from(buf)[0] - len(buf)
            if need > 0:
                buf += view[:need]
                view = view[need:]
                if len(buf) < 4 + _header_from(buf)[0]:
                    return out
            whole = memoryview(buf)
            try:
                out.append(_unpackb(whole[4:]))
            except Exception as exc:
                whole.release()
                raise self._body_error(exc, out) from None
            whole.release()
            buf.clear()
            data = view
        # The hot path: complete frames straight from the caller's chunk.
        end = len(data)
        off = 0
        max_frame = self.max_frame
        append = out.append
        while end - off >= 4:
            n = _header_from(data, off)[0]
            if n > max_frame or n == 0:
                self._check_header(n, out, data[off:])
            start = off + 4
            stop = start + n
            if stop > end:
                break
            try:
                # msgpack >= 1.0 defaults: raw=False (str stays str), strict_map_key,
                # and every length limit bounded by the frame size.
                append(_unpackb(data[start:stop]))
            except Exception as exc:
                raise self._body_error(exc, out) from None
            off = stop
        if off < end:
            buf += data[off:]
        return out


def frame(body: bytes) -> bytes:
    """Prefix an encoded msgpack body with its 4-byte big-endian length."""
    return _header_pack(len(body)) + body


def _encode(obj: list[Any], max_frame: int) -> bytes:
    try:
        body: bytes = _pack(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode message: {exc}") from exc
    n = len(body)
    if n > PACKER_KEEP:
        _renew_packer()
    if n > max_frame:
        raise LocalProtocolError(
            f"frame of {n} bytes exceeds the limit of {max_frame}", ErrorCode.FRAME_TOO_LARGE
        )
    return _header_pack(n) + body


def encode_request(
    msgid: int,
    method: str,
    params: list[Any] | tuple[Any, ...],
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> bytes:
    """Encode one request as a whole frame (header included).

    Args:
        msgid: uint32 the response will carry back.
        method: the method name.
        params: list or tuple of msgpack-encodable arguments (bytes travel as bin).
        max_frame: refuse to build a frame larger than this.

    Returns:
        The frame bytes, ready for `transport.write`.

    Raises:
        LocalProtocolError: bad msgid/method/params type, an unencodable value, or
            FRAME_TOO_LARGE.

    Example:
        >>> encode_request(1, "ping", []).hex()
        '00000009940001a470696e6790'
    """
    if type(msgid) is not int or not 0 <= msgid <= MAX_MSGID:
        raise LocalProtocolError(f"msgid must be an int in 0..2**32-1, got {msgid!r}")
    if type(method) is not str:
        raise LocalProtocolError(f"method must be a str, got {method!r}")
    if type(params) is not list and type(params) is not tuple:
        raise LocalProtocolError(f"params must be a list or tuple, got {type(params).__name__}")
    return _encode([REQUEST, msgid, method, params], max_frame)


def encode_response(
    msgid: int,
    result: Any = None,
    error: ErrorInfo | None = None,
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> bytes:
    """Encode one response as a whole frame (header included).

    Args:
        msgid: the msgid of the request answered.
        result: the result (ignored and sent as nil when `error` is given).
        error: None for success, else the ErrorInfo to send.
        max_frame: refuse to build a frame larger than this.

    Returns:
        The frame bytes.

    Raises:
        LocalProtocolError: bad msgid or error type, an unencodable result, or
            FRAME_TOO_LARGE (a server then answers with an error instead).

    Example:
        >>> encode_response(1, True)
        b'\\x00\\x00\\x00\\x05\\x94\\x01\\x01\\xc0\\xc3'
    """
    if type(msgid) is not int or not 0 <= msgid <= MAX_MSGID:
        raise LocalProtocolError(f"msgid must be an int in 0..2**32-1, got {msgid!r}")
    if error is None:
        return _encode([RESPONSE, msgid, None, result], max_frame)
    if type(error) is not ErrorInfo:
        raise LocalProtocolError(f"error must be an ErrorInfo or None, got {error!r}")
    return _encode([RESPONSE, msgid, error.to_obj(), None], max_frame)


def encode(message: Request | Response, *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Encode a `Request` or `Response` object as a whole frame.

    Raises:
        LocalProtocolError: as `encode_request` / `encode_response`.
    """
    if type(message) is Request:
        return _encode(message.to_obj(), max_frame)
    if type(message) is Response:
        return _encode(message.to_obj(), max_frame)
    raise LocalProtocolError(f"not a message: {message!r}")
