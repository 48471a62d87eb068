"""Reading one HTTP request off the wire: httptools' callbacks, the limits, the head's checks.

Strategy / invariants:
- httptools (llhttp) parses; RequestParsing (a base of HttpProtocol, as uvicorn's
  protocol is its parser's callback target) only collects the pieces of a request in
  its callbacks and tells the connection what happened through four hooks:
  _request_begun, _head_done, _body_progress, _request_parsed. What to do about it
  (timers, 100 Continue, serving, closing) is the connection's (server/http.py).
- Limits are enforced while parsing, before anything is buffered beyond them: the
  request line + headers (431; 414 for a URL alone), Content-Length or a chunked body
  over max_frame (413). A callback stops the parser by raising Reject; the connection
  answers its response with `connection: close`.
- The head is HTTP/1.1 or HTTP/1.0 (else 505), and an HTTP/1.1 one has exactly one
  valid Host (else 400), both checked first at headers-complete (`_check_version`).
- The head decides what it can before the body is read (`_http_routes.check_head`,
  the same rules route() applies later): a raw PUT's or an append's body over the
  store's max_value_size is a 413 at once (Content-Length) or as soon as the chunks
  pass it; a request route() will refuse whatever its body (401, 404, 405, a bad key)
  is refused before its body when the client waits for `100 Continue` (RFC 9110
  10.1.1), and otherwise has its body read and dropped, not buffered.
- Upgrade (and CONNECT) requests are answered as plain HTTP/1.1: llhttp stops parsing
  where the other protocol would begin, so it cannot tell a body from that protocol's
  bytes; an upgrade request with a body is refused (400) rather than served without it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from time import perf_counter
from typing import cast

import httptools

from bitcask.logthrottle import LogThrottle
from protocol import ErrorCode

from ._http_routes import HeadCheck, Request, Response, check_head, is_probe, simple_error
from ._metrics import route_label
from ._state import ServerState

__all__ = ["MAX_HEADERS", "MAX_URL", "Reject", "RequestParsing"]

log = logging.getLogger("bitcask.server.http")
# What a client can repeat per request (out of memory, a handler's bug): one line per
# kind every 10 s, the rest counted (bitcask/logthrottle.py).
_throttle = LogThrottle(log)

MAX_HEADERS = 100
# httptools.parse_url (http_parser_url) holds offsets in 16 bits: a longer URL was a 400
# "malformed request URL" whatever --http-max-header-bytes allowed; it is a 414.
MAX_URL = 65535

# RFC 9110 4.2.3 / RFC 3986 3.2.2: what a Host's uri-host [":" port] may hold
_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]"
)


def _version_refusal(what: str) -> Response:
    return simple_error(
        505, ErrorCode.PROTOCOL_ERROR, f"{what} is not supported: this server speaks HTTP/1.1"
    )


class Reject(Exception):
    """Raised inside a parser callback to stop parsing and answer `response`."""

    def __init__(self, resp: Response, label: str = "http_error") -> None:
        super().__init__(resp.status)
        self.response = resp
        self.label = label  # the metrics label it is counted under


class RequestParsing(ABC):
    """The httptools callbacks of one connection: a request's pieces, its limits.

    The connection (HttpProtocol) calls _init_parsing() once, feeds bytes to
    self._parser, and implements the four hooks below.
    """

    _state: ServerState
    _closing: bool  # no more requests are served (the connection's; see server/_flow.py)
    _probes_only: bool  # admitted past the cap: probes only (the connection's)

    def _init_parsing(self, state: ServerState) -> None:
        cfg = state.config
        self._max_head = cfg.http_max_header_bytes
        self._max_body = cfg.max_frame
        self._parser = httptools.HttpRequestParser(self)
        # -- per-request --
        self._url = b""
        self._path = b""
        self._query = b""
        self._head_bytes = 0
        self._headers: dict[str, str] = {}
        self._header_count = 0
        self._hosts: list[str] = []  # the Host field lines (RFC 9112 3.2: exactly one)
        self._head = False  # a HEAD request: no reply to it carries a body, a refusal's neither
        self._body: list[bytes] = []
        self._body_size = 0
        self._check: HeadCheck | None = None  # what the head decided (None: not served)
        self._t0 = 0.0

    def _drop_request(self) -> None:
        """The connection is gone: drop the request being read (a body of up to
        max_frame bytes), now rather than at a rare full garbage collection (the
        connection's objects form reference cycles)."""
        self._body = []
        self._body_size = 0
        self._headers = {}

    # ---- the connection's hooks ----

    @abstractmethod
    def _request_begun(self) -> None:
        """The first byte of a request arrived (the header deadline starts)."""

    @abstractmethod
    def _head_done(self, expect: bool) -> None:
        """The head was read and passed; `expect`: the client waits for 100 Continue."""

    @abstractmethod
    def _body_progress(self) -> None:
        """A piece of a body arrived (and was kept or dropped)."""

    @abstractmethod
    def _request_parsed(self, req: Request, t0: float) -> None:
        """A whole request was read; req.keep_alive is what the request allows."""

    # ---- httptools callbacks ----

    def on_message_begin(self) -> None:
        self._t0 = perf_counter()
        self._url = b""
        self._head_bytes = 0
        self._headers = {}
        self._header_count = 0
        self._hosts = []
        self._head = False
        self._body = []
        self._body_size = 0
        self._check = None
        self._request_begun()

    def on_url(self, url: bytes) -> None:
        self._head = self._parser.get_method() == b"HEAD"
        self._url += url
        self._head_bytes += len(url)
        if len(self._url) > self._max_head or len(self._url) > MAX_URL:
            raise Reject(simple_error(414, ErrorCode.PROTOCOL_ERROR, "request URL too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._header_count += 1
        if self._head_bytes > self._max_head or self._header_count > MAX_HEADERS:
            raise Reject(simple_error(431, ErrorCode.PROTOCOL_ERROR, "request headers too large"))
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key == "host":
            self._hosts.append(text)
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._check_version()
        length = self._headers.get("content-length")
        if self._parser.should_upgrade() and (
            "transfer-encoding" in self._headers or (length is not None and length.strip("0 "))
        ):
            # llhttp would hand the body to the upgraded protocol: it never reaches us
            raise Reject(
                simple_error(
                    400,
                    ErrorCode.PROTOCOL_ERROR,
                    "Upgrade is not supported, and a request asking for one cannot carry a"
                    " body: send it without Upgrade (curl: --http1.1)",
                )
            )
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise Reject(simple_error(413, ErrorCode.FRAME_TOO_LARGE, "request body too large"))
        te = self._headers.get("transfer-encoding")
        if te is not None and any(c.strip().lower() != "chunked" for c in te.split(",")):
            # llhttp decodes only chunked: gzip's bytes would be stored still compressed
            raise Reject(
                simple_error(501, ErrorCode.PROTOCOL_ERROR, f"transfer coding not supported: {te}")
            )
        expect = (  # RFC 9110 10.1.1: an HTTP/1.0 client's expectation is ignored
            self._headers.get("expect", "").lower() == "100-continue"
            and self._parser.get_http_version() != "1.0"
        )
        if not self._closing:  # else: after a reply that closes, never served
            self._check_head(length, expect)
        self._head_done(expect)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        check = self._check
        if check is None:  # not served (after a reply that closes): nothing to keep
            return
        if self._body_size > check.max_body:  # chunked: stop buffering at the limit
            raise Reject(self._too_large(check, None), route_label(self._path))
        if check.keeps_body:  # a refused request's body is read and dropped
            self._body.append(body)
        self._body_progress()

    def on_message_complete(self) -> None:
        parser = self._parser
        req = Request(
            method=self._method(),
            path=self._path,
            query=self._query,
            headers=self._headers,
            body=b"".join(self._body),
            keep_alive=(
                parser.should_keep_alive()
                and not self._probes_only  # its reserve slot is freed for the next probe
                and not parser.should_upgrade()  # what follows is not HTTP/1.1
            ),
            http10=parser.get_http_version() == "1.0",
        )
        self._body = []
        self._request_parsed(req, self._t0)

    # ---- the checks ----

    def _check_version(self) -> None:
        # llhttp takes HTTP/2.0 and HTTP/0.9 (a request line without a version) as
        # requests like any other: they were answered as HTTP/1.1. RFC 9112 2.3 and
        # RFC 9110 15.6.6: 505 for a major version we do not speak; RFC 9112 3.2: an
        # HTTP/1.1 request without exactly one valid Host is a 400 (HTTP/1.0 needs none).
        version = self._parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise Reject(_version_refusal(f"HTTP/{version}"))
        hosts = self._hosts
        if version == "1.1" and (len(hosts) != 1 or not _HOST_CHARS.issuperset(hosts[0])):
            what = "no Host header" if not hosts else "more than one Host header"
            if len(hosts) == 1:
                what = f"an invalid Host header {hosts[0]!r}"
            raise Reject(
                simple_error(400, ErrorCode.PROTOCOL_ERROR, f"HTTP/1.1 request with {what}")
            )

    def _check_head(self, length: str | None, expect: bool) -> None:
        """Refuse now what the head already decides (RFC 9110 10.1.1: a client waiting
        for 100 Continue gets the final status instead), a stated body over what the
        request may carry included; else note how much of the body to keep."""
        try:
            parsed = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            # llhttp lets through targets its URL parser refuses (CONNECT h:1, a port
            # over 65535, an unclosed IPv6 bracket): the client's error, not ours.
            raise Reject(
                simple_error(400, ErrorCode.PROTOCOL_ERROR, "malformed request URL")
            ) from None
        self._path = parsed.path or b"/"
        self._query = parsed.query or b""
        head = Request(self._method(), self._path, self._query, self._headers, b"", True)
        if self._probes_only and not is_probe(self._path):
            raise Reject(
                simple_error(
                    503,
                    ErrorCode.TOO_MANY_CONNECTIONS,
                    "too many connections: past --max-connections only the probes, "
                    "/metrics and /stats are served",
                ),
                route_label(self._path),
            )
        check = self._check = check_head(self._state, head)
        if length is not None and length.isdigit() and int(length) > check.max_body:
            raise Reject(self._too_large(check, int(length)), route_label(self._path))
        if expect and check.refusal is not None:
            raise Reject(check.refusal, route_label(self._path))

    def _method(self) -> str:
        return cast(bytes, self._parser.get_method()).decode("latin-1")

    @staticmethod
    def _too_large(check: HeadCheck, size: int | None) -> Response:
        if check.too_large == ErrorCode.VALUE_TOO_LARGE:
            what = f"value of {size} bytes" if size is not None else "value"
            return simple_error(413, check.too_large, f"{what} > {check.max_body}")
        return simple_error(413, check.too_large, "request body too large")

    def _parse_refusal(self, exc: httptools.HttpParserError) -> Reject:
        """What answers a parse that stopped: a callback's Reject, or the parser's error."""
        if isinstance(exc, httptools.HttpParserUpgrade):
            return Reject(
                simple_error(400, ErrorCode.PROTOCOL_ERROR, "protocol upgrades are not supported")
            )
        if isinstance(exc, httptools.HttpParserCallbackError):
            ctx = exc.__context__
            if isinstance(ctx, Reject):
                return ctx
            if isinstance(ctx, MemoryError):
                # the process is at its memory limit (ulimit -v): this request fails
                # alone, as a refusal, never a 500 with a traceback per request
                self._body = []
                _throttle.log(
                    "MemoryError",
                    logging.WARNING,
                    "out of memory reading an HTTP request: refused with 503 BUSY",
                )
                return Reject(
                    simple_error(
                        503, ErrorCode.BUSY, "out of memory for this request: retry, or send less"
                    )
                )
            _throttle.log(type(ctx).__name__, logging.ERROR, "HTTP handler failed", exc_info=ctx)
            return Reject(simple_error(500, ErrorCode.INTERNAL, "internal error"))
        if str(exc) == "Invalid HTTP version":
            # llhttp's refusal of HTTP/1.2, HTTP/3.0, ... (it names no other way): RFC
            # 9110 15.6.6's 505, as for HTTP/2.0 and HTTP/0.9 (_check_version)
            return Reject(_version_refusal("that HTTP version"))
        return Reject(simple_error(400, ErrorCode.PROTOCOL_ERROR, f"malformed HTTP request: {exc}"))
