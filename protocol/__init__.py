"""protocol: the bitcask wire format, sans-IO (bytes in, messages out).

Frames are a 4-byte big-endian length and a msgpack body; messages follow
msgpack-rpc's shapes. Nothing here does I/O: feed bytes to a decoder, get
messages back; encode messages to bytes and write them yourself. The complete
specification is docs/protocol.md. A server connection (`Connection`) that starts
with text speaks the Redis protocol instead (`RespDialect`, docs/redis.md).

Example:
    >>> from protocol import FrameDecoder, encode_request
    >>> FrameDecoder().feed(encode_request(1, "get", [b"k"]))
    [Request(msgid=1, method='get', params=[b'k'])]
"""

from __future__ import annotations

from protocol._lazy import lazy_exports

# typing is not imported at run time (nor anything else this file does not need)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from protocol._framing import (
        DEFAULT_MAX_FRAME,
        HARD_MAX_FRAME,
        FrameDecoder,
        encode,
        encode_request,
        encode_response,
        frame,
        reply_limit,
    )
    from protocol.connection import (
        CLOSED,
        NEED_DATA,
        BinaryDialect,
        Close,
        Connection,
        Dialect,
        Event,
        Reject,
    )
    from protocol.errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
    from protocol.messages import MAX_MSGID, ErrorInfo, Request, Response, message_from_obj
    from protocol.methods import (
        IDEMPOTENT_METHODS,
        METHODS,
        PROTOCOL_VERSION,
        SCAN_DEFAULT_COUNT,
        SCAN_MAX_COUNT,
        MethodSpec,
        validate_params,
    )
    from protocol.refusals import (
        TOO_MANY_CONNECTIONS_LINE,
        http_refusal,
        is_refusal,
        looks_like_http,
        refusal_error,
    )
    from protocol.resp_dialect import RespDialect

# Where each public name lives, imported on first use (PEP 562): a client needs the
# codec, the messages and the errors, not the server's side (`Connection`, the Redis
# dialect and its command table: protocol.connection and protocol.resp_dialect were
# about a quarter of a one-shot `bitcask get`'s imports, 15-20 ms).
if not TYPE_CHECKING:  # to mypy the names are the imports above: a typo stays an error
    __getattr__ = lazy_exports(
        __name__,
        {
            "protocol._framing": "DEFAULT_MAX_FRAME HARD_MAX_FRAME FrameDecoder encode "
            "encode_request encode_response frame reply_limit",
            "protocol.connection": "CLOSED NEED_DATA BinaryDialect Close Connection Dialect Event "
            "Reject",
            "protocol.errors": "ErrorCode LocalProtocolError ProtocolError RemoteProtocolError",
            "protocol.messages": "ErrorInfo MAX_MSGID Request Response message_from_obj",
            "protocol.methods": "IDEMPOTENT_METHODS METHODS PROTOCOL_VERSION SCAN_DEFAULT_COUNT "
            "SCAN_MAX_COUNT MethodSpec validate_params",
            "protocol.refusals": "TOO_MANY_CONNECTIONS_LINE http_refusal is_refusal "
            "looks_like_http refusal_error",
            "protocol.resp_dialect": "RespDialect",
        },
    )


__all__ = [
    "CLOSED",
    "DEFAULT_MAX_FRAME",
    "HARD_MAX_FRAME",
    "IDEMPOTENT_METHODS",
    "MAX_MSGID",
    "METHODS",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "SCAN_DEFAULT_COUNT",
    "SCAN_MAX_COUNT",
    "TOO_MANY_CONNECTIONS_LINE",
    "BinaryDialect",
    "Close",
    "Connection",
    "Dialect",
    "ErrorCode",
    "ErrorInfo",
    "Event",
    "FrameDecoder",
    "LocalProtocolError",
    "MethodSpec",
    "ProtocolError",
    "Reject",
    "RemoteProtocolError",
    "Request",
    "RespDialect",
    "Response",
    "encode",
    "encode_request",
    "encode_response",
    "frame",
    "http_refusal",
    "is_refusal",
    "looks_like_http",
    "message_from_obj",
    "refusal_error",
    "reply_limit",
    "validate_params",
]
