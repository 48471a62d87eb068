"""HTTP routes: what each path means, and how results and errors become responses.

Strategy: http.py owns the connection (parsing, timers, flow control) and hands each
complete request here. `route()` either answers at once (probes, /metrics, /stats,
every 4xx) or names a dispatcher call for /kv, which then runs through the same
Pipeline (ordering, read-your-writes) and writer queue as the binary port. Responses
are assembled as bytes by `response()`; nothing here touches a socket.

/kv shapes: raw bytes by default. `Accept: application/json` (responses) or
`Content-Type: application/json` on PUT (a body {"value": ..., "ttl": s}) switch to the
seed-compatible JSON shapes {"key", "value", "found"} and {"status": "success"}.
Errors are always JSON: {"status": "error", "error": {"code", "name", "message"}}.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes

from protocol import ErrorCode, ErrorInfo
from protocol import Request as Call

from ._outcome import make_error

if TYPE_CHECKING:
    from ._state import ServerState

__all__ = [
    "HeadCheck",
    "KvCall",
    "KvContext",
    "Request",
    "Response",
    "check_head",
    "is_probe",
    "response",
    "route",
]

STATUS_TEXT = {
    200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
    414: "URI Too Long", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
    507: "Insufficient Storage",
}  # fmt: skip

ERROR_STATUS = {
    ErrorCode.PROTOCOL_ERROR: 400, ErrorCode.UNKNOWN_METHOD: 404, ErrorCode.INVALID_PARAMS: 400,
    ErrorCode.UNSUPPORTED_VERSION: 400, ErrorCode.AUTH_REQUIRED: 401, ErrorCode.AUTH_FAILED: 401,
    ErrorCode.KEY_TOO_LARGE: 413, ErrorCode.VALUE_TOO_LARGE: 413, ErrorCode.FRAME_TOO_LARGE: 413,
    ErrorCode.TOO_MANY_CONNECTIONS: 503, ErrorCode.BATCH_TOO_LARGE: 413, ErrorCode.READ_ONLY: 503,
    ErrorCode.IO_ERROR: 503, ErrorCode.CORRUPT_RECORD: 500, ErrorCode.MERGE_IN_PROGRESS: 409, ErrorCode.STORE_FULL: 507,
    ErrorCode.INTERNAL: 500, ErrorCode.SHUTTING_DOWN: 503, ErrorCode.BUSY: 503,
    ErrorCode.NOT_A_NUMBER: 409, ErrorCode.NO_SUCH_KEY: 404,
}  # fmt: skip

KV_PREFIX = "/kv/"
KV_METHODS = "GET, HEAD, PUT, DELETE, POST"
PROBE_METHODS = "GET, HEAD"
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


# The records below are plain __slots__ classes, built per request and compared by
# nothing: as dataclasses their generated __init__, __repr__ and __eq__ were exec()ed
# at import, 15 compilations, ~10M instructions of a bitcask-server start (callgrind).


class Request:
    """One complete HTTP request as http.py parsed it (header names lower-case)."""

    __slots__ = ("body", "headers", "http10", "keep_alive", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: bytes,
        query: bytes,
        headers: dict[str, str],
        body: bytes,
        keep_alive: bool,
        http10: bool = False,  # an HTTP/1.0 request: a kept-alive reply must say so
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http10 = http10


class Response:
    __slots__ = ("body", "content_type", "error", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = TEXT,
        headers: list[tuple[str, str]] | None = None,
        error: ErrorInfo | None = None,  # what an error response reports (counted in /metrics)
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers: list[tuple[str, str]] = [] if headers is None else headers
        self.error = error


class KvContext:
    """What rendering a /kv result needs to know about its request."""

    __slots__ = ("http10", "json", "keep_alive", "key", "verb")

    def __init__(
        self, verb: str, key: bytes, json: bool, keep_alive: bool, http10: bool = False
    ) -> None:
        self.verb = verb  # GET HEAD PUT DELETE POST
        self.key = key
        self.json = json
        self.keep_alive = keep_alive
        self.http10 = http10


class KvCall:
    """Route /kv through the dispatcher: the same request object as the binary port's."""

    __slots__ = ("ctx", "request")

    def __init__(self, request: Call, ctx: KvContext) -> None:
        self.request = request
        self.ctx = ctx


def response(resp: Response, keep_alive: bool, head: bool = False, http10: bool = False) -> bytes:
    """Serialize a response (HEAD: headers only, Content-Length still the body's).

    An HTTP/1.0 client keeps the connection only when the reply says `keep-alive`
    (RFC 9112 9.3, appendix C.2.2): without it, one that asked for keep-alive (ab -k)
    takes the reply for the last and waits for the close, --http-keepalive seconds.
    """
    lines = [
        f"HTTP/1.1 {resp.status} {STATUS_TEXT.get(resp.status, 'Unknown')}",
        "server: bitcask",
    ]
    if resp.status != 204:  # RFC 9110 8.6: a 204 carries no Content-Length (nor body)
        lines.append(f"content-type: {resp.content_type}")
        lines.append(f"content-length: {len(resp.body)}")
    lines.extend(f"{k}: {v}" for k, v in resp.headers)
    if not keep_alive:
        lines.append("connection: close")
    elif http10:
        lines.append("connection: keep-alive")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head or resp.status == 204 else head_bytes + resp.body


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(obj, separators=(", ", ": ")).encode() + b"\n"
    return Response(status, body, JSON, headers or [])


def error_response(error: ErrorInfo, status: int | None = None) -> Response:
    """The JSON error body for `error`; the status follows its code unless given."""
    if status is None:
        try:
            status = ERROR_STATUS.get(ErrorCode(error.code), 500)
        except ValueError:
            status = 500
    headers: list[tuple[str, str]] = []
    if status == 401:
        # RFC 6750 3.1: a token that was sent and is wrong says so (invalid_token); a
        # request without one gets the challenge alone
        challenge = 'Bearer realm="bitcask"'
        if error.code == ErrorCode.AUTH_FAILED:
            challenge += ', error="invalid_token"'
        headers.append(("www-authenticate", challenge))
    if error.code == ErrorCode.BUSY:
        headers.append(("retry-after", "1"))
    body = {
        "status": "error",
        "error": {"code": error.code, "name": error.name, "message": error.message},
    }
    resp = json_response(status, body, headers)
    resp.error = error
    return resp


def simple_error(status: int, code: ErrorCode, message: str) -> Response:
    return error_response(make_error(code, message), status)


class HeadCheck:
    """What a request's head alone decides: http.py asks before it reads the body."""

    __slots__ = ("keeps_body", "max_body", "refusal", "too_large")

    def __init__(
        self, refusal: Response | None, max_body: int, too_large: ErrorCode, keeps_body: bool
    ) -> None:
        self.refusal = refusal  # what route() answers whatever the body (401, 404, 405, ...)
        self.max_body = max_body  # the largest body worth reading; past it, a 413 (too_large)
        self.too_large = too_large
        self.keeps_body = keeps_body  # the body is used (a PUT's value, an append's suffix)


def check_head(state: ServerState, req: Request) -> HeadCheck:
    """Judge `req` (its body not read yet) the way route() will once it is.

    A raw PUT's body is the value and an append's the suffix, so past the store's
    max_value_size it is refused before it is read (VALUE_TOO_LARGE, as the
    dispatcher would answer after buffering it); a JSON body may be larger than its
    value, so it has --max-frame only.
    """
    max_frame = state.config.max_frame
    refusal = _refusal(state, req)
    if refusal is not None:
        return HeadCheck(refusal, max_frame, ErrorCode.FRAME_TOO_LARGE, False)
    if not req.path.startswith(b"/kv/"):
        return HeadCheck(None, max_frame, ErrorCode.FRAME_TOO_LARGE, False)
    if req.method == "PUT":
        raw = req.headers.get("content-type", "").split(";")[0].strip().lower() != JSON
    elif req.method == "POST":
        raw = "append" in parse_qs(req.query.decode("latin-1"), keep_blank_values=True)
    else:
        return HeadCheck(None, max_frame, ErrorCode.FRAME_TOO_LARGE, False)
    max_value = state.dispatcher.limits["max_value_size"]
    if raw and max_value < max_frame:
        return HeadCheck(None, max_value, ErrorCode.VALUE_TOO_LARGE, True)
    return HeadCheck(None, max_frame, ErrorCode.FRAME_TOO_LARGE, True)


def is_probe(path: bytes) -> bool:
    """A route that never touches the writer: the probes, /metrics and /stats."""
    return path in _PROBES


def route(state: ServerState, req: Request) -> Response | KvCall:
    """Decide what a request means: an immediate Response or a /kv dispatcher call."""
    refusal = _refusal(state, req)
    if refusal is not None:
        return refusal
    if req.path.startswith(b"/kv/"):
        return _kv(req)
    return _PROBES[req.path](state)


def _refusal(state: ServerState, req: Request) -> Response | None:
    """The refusals that do not depend on the body (route, method, auth, the key, the
    query): answered before it is read when the client waits for `100 Continue`, and
    never buffering it otherwise."""
    path = req.path
    if path.startswith(b"/kv/"):
        return _kv_refusal(state, req)
    if path not in _PROBES:
        return simple_error(404, ErrorCode.UNKNOWN_METHOD, f"no route for {path.decode('latin-1')}")
    if req.method not in ("GET", "HEAD"):
        resp = simple_error(405, ErrorCode.UNKNOWN_METHOD, f"{req.method} not allowed here")
        resp.headers.append(("allow", PROBE_METHODS))
        return resp
    return None


def _kv_refusal(state: ServerState, req: Request) -> Response | None:
    if req.method not in ("GET", "HEAD", "PUT", "DELETE", "POST"):
        resp = simple_error(405, ErrorCode.UNKNOWN_METHOD, f"{req.method} not allowed on /kv")
        resp.headers.append(("allow", KV_METHODS))
        return resp
    if "origin" in req.headers or req.headers.get("sec-fetch-site", "none") != "none":
        # A web page's request (docs/security.md): a POST with a text/plain body is a
        # CORS "simple" request a browser sends cross-site without asking first, so any
        # page a developer opened could `?append` to (or create) any key of a server on
        # 127.0.0.1 without --auth, and a DNS-rebinding page could read them. Browsers
        # name such requests' origin; curl, the client libraries and probes never do.
        return simple_error(
            403, ErrorCode.AUTH_FAILED, "requests from web pages are refused (Origin header)"
        )
    if state.dispatcher.auth_required:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            return simple_error(401, ErrorCode.AUTH_REQUIRED, "send Authorization: Bearer <token>")
        # the header's own bytes (decoded latin-1 by http.py): a token that is not ASCII
        # is compared as the bytes the client sent, as on the other ports
        presented = token.strip().encode("latin-1")
        if scheme.lower() != "bearer" or not state.dispatcher.check_token(presented):
            return simple_error(401, ErrorCode.AUTH_FAILED, "invalid token")
    raw_key = req.path[len(KV_PREFIX) :]
    if _BAD_PERCENT.search(raw_key):
        return simple_error(400, ErrorCode.INVALID_PARAMS, "bad percent-encoding in the key")
    if not raw_key:
        return simple_error(400, ErrorCode.INVALID_PARAMS, "empty key: use /kv/{key}")
    size, max_key = len(unquote_to_bytes(raw_key)), state.dispatcher.max_key
    if size > max_key:  # the dispatcher's check, before a body is waited for
        return simple_error(413, ErrorCode.KEY_TOO_LARGE, f"key of {size} bytes > {max_key}")
    if req.method == "POST":
        return _post_refusal(req)
    if req.method == "PUT":
        try:
            _query_ttl(req.query)
        except ValueError as exc:
            return simple_error(400, ErrorCode.INVALID_PARAMS, str(exc))
    return None


def _post_refusal(req: Request) -> Response | None:
    query = parse_qs(req.query.decode("latin-1"), keep_blank_values=True)
    if ("incr" in query) == ("append" in query):
        return simple_error(
            400, ErrorCode.INVALID_PARAMS, "POST /kv/{key} takes ?incr=N or ?append (body)"
        )
    raw = query.get("incr", [""])[-1]
    if raw and not _INTEGER.fullmatch(raw):  # not int()'s "1_0", " 5", non-ASCII digits
        return simple_error(400, ErrorCode.INVALID_PARAMS, "incr must be an integer")
    return None


def _kv(req: Request) -> Response | KvCall:
    key = unquote_to_bytes(req.path[len(KV_PREFIX) :])
    wants_json = JSON in req.headers.get("accept", "")
    ctx = KvContext(req.method, key, wants_json, req.keep_alive, req.http10)
    if req.method in ("GET", "HEAD"):
        return KvCall(Call(0, "get", [key]), ctx)
    if req.method == "DELETE":
        return KvCall(Call(0, "delete", [key]), ctx)
    if req.method == "POST":
        return _post(key, req, ctx)
    try:
        ttl = _query_ttl(req.query)
        value = req.body
        if req.headers.get("content-type", "").split(";")[0].strip().lower() == JSON:
            ctx.json = True
            value, body_ttl = _json_value(req.body)
            ttl = body_ttl if body_ttl is not None else ttl
    except ValueError as exc:
        return simple_error(400, ErrorCode.INVALID_PARAMS, str(exc))
    params: list[Any] = [key, value] if ttl is None else [key, value, {"ttl": ttl}]
    return KvCall(Call(0, "put", params), ctx)


def _post(key: bytes, req: Request, ctx: KvContext) -> KvCall:
    # POST /kv/{key}?incr=N (N defaults to 1) or ?append (the body is the suffix):
    # the atomic read-modify-write methods, decided by the writer at apply time.
    # The query was checked by _post_refusal.
    query = parse_qs(req.query.decode("latin-1"), keep_blank_values=True)
    if "append" in query:
        return KvCall(Call(0, "append", [key, req.body]), ctx)
    raw = query["incr"][-1]
    delta = int(raw) if raw else 1
    return KvCall(Call(0, "incr", [key, delta]), ctx)


# The ttl's range (> 0, finite, expiry within MAX_EXPIRY_MS) is checked once, by
# protocol.validate_params, like every other put; here it is only parsed.


def _query_ttl(query: bytes) -> float | None:
    if not query:
        return None
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("ttl")
    if not values:
        return None
    # A plain decimal number: not "" (which used to store the value without a TTL),
    # nor what else float() takes ("1_0", " 5", non-ASCII digits).
    if not _DECIMAL.fullmatch(values[-1]):
        raise ValueError("ttl must be a number of seconds")
    return float(values[-1])


def _json_value(body: bytes) -> tuple[bytes, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a body nested deeper than the interpreter's stack allows
        raise ValueError(
            'the body is not JSON (or nested too deeply); send {"value": ...}'
        ) from None
    if not isinstance(doc, dict) or "value" not in doc:
        raise ValueError('a JSON body must be an object with a "value" field')
    value = doc["value"]
    try:
        data = value.encode() if isinstance(value, str) else json.dumps(value).encode()
    except (ValueError, RecursionError):
        raise ValueError('"value" cannot be stored (nested too deeply?)') from None
    return data, doc.get("ttl")


def _key_field(key: bytes) -> dict[str, Any]:
    """A JSON reply's "key": the key as text, or, for a key that is not UTF-8, its
    base64 with "key_encoding": "base64" (as "encoding" marks a value). Decoding with
    replacement made k\\xff\\xfe and k\\xfe\\xff both "k\\ufffd\\ufffd"."""
    try:
        return {"key": key.decode()}
    except UnicodeDecodeError:
        return {"key": base64.b64encode(key).decode(), "key_encoding": "base64"}


def render_kv(ctx: KvContext, result: Any, error: ErrorInfo | None) -> Response:
    """The response for a finished /kv call."""
    if error is not None:
        return error_response(error)
    if ctx.verb in ("GET", "HEAD"):
        if result is None:
            if ctx.json:
                return json_response(404, {**_key_field(ctx.key), "value": None, "found": False})
            return Response(404, b"not found\n")
        if ctx.json:
            doc: dict[str, Any] = _key_field(ctx.key)
            try:
                doc.update(value=result.decode(), found=True)
            except UnicodeDecodeError:
                doc.update(value=base64.b64encode(result).decode(), found=True, encoding="base64")
            return json_response(200, doc)
        return Response(200, result, "application/octet-stream")
    if ctx.verb == "POST":  # incr: the new value; append: the new length
        if ctx.json:
            return json_response(200, {**_key_field(ctx.key), "value": result})
        return Response(200, str(result).encode())
    if ctx.verb == "DELETE":
        if not result:
            if ctx.json:
                return json_response(404, {**_key_field(ctx.key), "found": False})
            return Response(404, b"not found\n")
        return json_response(200, {"status": "success"}) if ctx.json else Response(204)
    return json_response(200, {"status": "success"}) if ctx.json else Response(204)


# ---- probes and introspection ----


def _health(state: ServerState) -> Response:
    reason = state.host.readonly_reason()
    body: dict[str, Any] = {
        "status": "unhealthy" if reason else "healthy",
        "keys": state.host.key_count(),
        "readonly_reason": reason,
        "disk": state.host.disk_health(),
        "uptime_seconds": round(state.host.uptime(), 3),
    }
    return json_response(503 if reason else 200, body)


def _livez(state: ServerState) -> Response:
    problem = state.host.not_live_reason()
    if problem:
        return Response(503, f"not live: {problem}\n".encode())
    return Response(200, b"ok\n")


def _readyz(state: ServerState) -> Response:
    problem = state.host.not_ready_reason()
    if problem:
        return Response(503, f"not ready: {problem}\n".encode())
    return Response(200, b"ready\n")


def _metrics(state: ServerState) -> Response:
    return Response(
        200, state.host.render_metrics().encode(), "text/plain; version=0.0.4; charset=utf-8"
    )


def _stats(state: ServerState) -> Response:
    return json_response(200, state.host.stats())


_PROBES = {
    b"/health": _health,
    b"/livez": _livez,
    b"/readyz": _readyz,
    b"/metrics": _metrics,
    b"/stats": _stats,
}
