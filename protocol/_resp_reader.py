"""Redis request reader: RESP multibulk and inline commands, bytes in, argv lists out.

Strategy / invariants:
- Framing follows Redis 7's networking.c (processMultibulkBuffer, processInlineBuffer),
  not a generic RESP parser: a request starting with `*` is a multibulk of `$` bulk
  strings, anything else is an inline line split by `split_inline` (sdssplitargs,
  protocol/_resp_inline.py).
  A multibulk count <= 0 and an empty inline line are skipped, as Redis skips them.
- Every limit is independent of how the stream is split: a header line (`*N`, `$N`)
  whose `\\r` lies more than 64 KiB in, an inline line longer than 64 KiB, a bulk
  over `max_bulk` and an incomplete request over `max_request` are errors whether
  the bytes come at once or one by one. So the buffer never holds more than one
  maximum request plus what the caller fed in one `feed()`.
- A protocol error is terminal: `next_command()` returns the commands before it,
  then the `ProtocolFailure` once, then only None; later bytes are dropped.
  Nothing here raises on any input.
- Scanning is linear: `_scan` remembers how far the current line was searched, so
  feeding byte by byte costs O(n), not O(n^2).
- hiredis's C `Reader` (when importable) only *proposes* a parse of a complete
  multibulk; the proposal is taken only when every element sits at the offset the
  canonical encoding `*N\\r\\n($L\\r\\n<L bytes>\\r\\n)*N` gives it and starts with `$`
  (hiredis would also accept `+x`, `:1`, nested arrays, verbatim strings, which Redis
  refuses). hiredis parses lengths with the same strict string2ll as Redis, so by
  induction an accepted proposal is exactly what Redis reads. Anything else (an
  incomplete request, a hiredis error, a rejected proposal) goes to the pure-Python
  parser, and hiredis is left out until every byte buffered at that moment was read
  (`_hr_after`): a mirror is made from a copy of the rest of the buffer, so making
  one per request of a chunk hiredis cannot parse (`*1\\rX$4\\rXPING\\rX`, which
  Redis reads) was quadratic; this way each byte goes into at most one mirror.
- hiredis allocates an aggregate's list from its header, before the elements come
  (`*2147483647\\r\\n`: 16 GB of address space, ~4 s to free; a nested RESP3 push
  `>1000000000` ~23 s to build), and freeing an unfinished one costs its declared
  size. So bytes holding an aggregate header of 5 digits or more (`_BIG_AGGREGATE`:
  >= 10,000 elements, any of `* ~ > | %` at a line start) are never fed to it: such
  requests (and the rest of that buffer) take the pure path, whose cost follows the
  bytes received. The search is C-speed but per byte, so hiredis only ever sees
  buffers of at most `_HR_MAX` bytes; a larger one (large values, long pipelines)
  takes the pure path, whose cost is then the copies both paths make.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from protocol._resp_inline import split_inline

_hiredis: Any
try:  # optional C accelerator (the `fast` extra)
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - depends on the environment
    _hiredis = None

__all__ = [
    "HIREDIS_AVAILABLE",
    "INLINE_MAX",
    "MAX_BULK",
    "MAX_MULTIBULK",
    "MAX_REQUEST",
    "ProtocolFailure",
    "RespReader",
]

HIREDIS_AVAILABLE = _hiredis is not None

INLINE_MAX = 64 * 1024
"""PROTO_INLINE_MAX_SIZE: longest inline line, and longest `*N`/`$N` header line."""
MAX_BULK = 512 * 1024 * 1024
"""proto-max-bulk-len's default: the largest bulk string of a request."""
MAX_MULTIBULK = 2**31 - 1
"""INT_MAX: the largest multibulk count Redis 7 accepts."""
MAX_REQUEST = 1024 * 1024 * 1024
"""client-query-buffer-limit's default: the most one incomplete request may buffer."""
UNAUTH_MAX_MULTIBULK = 10
"""Before AUTH (when a password is set), Redis refuses counts above this..."""
UNAUTH_MAX_BULK = 16384
"""...and bulk lengths above this."""

_COMPACT_AT = 64 * 1024
# a canonical `*N` (N >= 1) and `$L` header up to its `\r` (the next byte is skipped unseen)
_COUNT = re.compile(rb"\*([1-9][0-9]{0,9})\r")
_LENGTH = re.compile(rb"\$(0|[1-9][0-9]{0,18})\r")
# an aggregate header hiredis would allocate >= 10,000 slots for (see the Strategy);
# hiredis needs CRLF line ends, so past the mirror's first byte it follows a `\n`
_BIG_AGGREGATE = re.compile(rb"\n[*%~>|][0-9]{5}")
_BIG_HEAD = re.compile(rb"[*%~>|][0-9]{5}")  # the same at the mirror's first byte
_BIG_OVERLAP = 6  # a header split across two feeds: search from this far back
_HR_MAX = 512 * 1024  # most bytes a hiredis mirror is given (each is searched first)


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """The terminal error of a request stream: reply with `reply`, then close.

    Attributes:
        reply: the exact error line Redis 7 sends, e.g.
            `b"-ERR Protocol error: invalid bulk length\\r\\n"`.

    Example:
        >>> ProtocolFailure(b"-ERR Protocol error: x\\r\\n").message
        'ERR Protocol error: x'
    """

    reply: bytes

    @property
    def message(self) -> str:
        """The error text without `-` and CRLF (latin-1, for logs)."""
        return self.reply[1:-2].decode("latin-1")


def _failure(text: bytes) -> ProtocolFailure:
    # addReplyError turns \r and \n into spaces so the reply stays one line.
    return ProtocolFailure(b"-ERR Protocol error: " + text.translate(_NO_CRLF) + b"\r\n")


_NO_CRLF = bytes.maketrans(b"\r\n", b"  ")


def _string2ll(digits: bytes) -> int | None:
    """Redis's strict string2ll: [-]digits, no '+', no leading zeros, no spaces, int64."""
    n = len(digits)
    if n == 0 or n > 20:
        return None
    if digits == b"0":
        return 0
    body = digits[1:] if digits[0] == 0x2D else digits
    if not body or not body.isdigit() or body[0] == 0x30:
        return None
    value = int(digits)
    if value > 2**63 - 1 or value < -(2**63):
        return None
    return value


# --- the reader -------------------------------------------------------------------


class RespReader:
    """Incremental reader of Redis requests (multibulk and inline), sans-IO.

    Args:
        use_hiredis: None picks hiredis when importable; False forces pure Python;
            True requires hiredis (ImportError without it).
        max_bulk: largest bulk string (Redis: proto-max-bulk-len, 512 MiB).
        max_request: most bytes one incomplete request may buffer (Redis:
            client-query-buffer-limit, 1 GiB).
        authenticated: False applies Redis's pre-AUTH limits (count <= 10, bulk
            <= 16384); set `reader.authenticated = True` after a successful AUTH.

    Example:
        >>> r = RespReader(use_hiredis=False)
        >>> r.feed(b"*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\nPING\\r\\n*1\\r\\n#\\r\\n")
        >>> [r.next_command(), r.next_command(), r.next_command()]
        [[b'GET', b'k'], [b'PING'], ProtocolFailure(reply=b"-ERR Protocol error: expected '$', got '#'\\r\\n")]
    """

    def __init__(
        self,
        *,
        use_hiredis: bool | None = None,
        max_bulk: int = MAX_BULK,
        max_request: int = MAX_REQUEST,
        authenticated: bool = True,
    ) -> None:
        if use_hiredis and _hiredis is None:
            raise ImportError("hiredis is not installed (pip install 'bitcask[fast]')")
        # limits
        self.max_bulk = max_bulk
        self.max_request = max_request
        self.authenticated = authenticated
        # the stream
        self._buf = bytearray()
        self._pos = 0  # start of the request being read
        self._failed: ProtocolFailure | None = None
        self._done = False  # the failure was handed out
        # pure-Python multibulk state of the request at _pos
        self._argv: list[bytes] = []
        self._remaining = 0  # elements still to read; 0 = no multibulk open
        self._bulklen = -1  # length of the element being read, -1 = header not read
        self._at = 0  # where the next header/element starts (multibulk open)
        self._scan = 0  # how far a line end was already searched for
        self._stalled = False  # a NUL came before the line end (see _line_end)
        # hiredis mirror: holds exactly _buf[_pos:] while _hr_synced
        self._use_hiredis = _hiredis is not None if use_hiredis is None else use_hiredis
        self._hr: Any = None
        self._hr_synced = False
        self._hr_after = 0  # no mirror for a request starting before this offset

    @property
    def buffered(self) -> int:
        """Bytes held for the request not complete yet (the hiredis mirror's copy aside)."""
        return len(self._buf) - self._pos

    @property
    def uses_hiredis(self) -> bool:
        """True when complete multibulks are parsed by hiredis."""
        return self._use_hiredis

    @property
    def failure(self) -> ProtocolFailure | None:
        """The terminal error, once one was found."""
        return self._failed

    def feed(self, data: bytes) -> None:
        """Append received bytes. Never raises; ignored after a protocol error."""
        if self._failed is not None or not data:
            return
        buf = self._buf
        buf += data
        if self._hr_synced:
            start = max(self._pos, len(buf) - len(data) - _BIG_OVERLAP)
            if len(buf) - self._pos <= _HR_MAX and _BIG_AGGREGATE.search(buf, start) is None:
                self._hr.feed(data)
            else:
                self._hr_off()

    def next_command(self) -> list[bytes] | ProtocolFailure | None:
        """The next complete command, the terminal failure (once), or None for "need more".

        Returns:
            An argv (list of bytes, never empty), a `ProtocolFailure` exactly once
            after the last good command, else None.
        """
        while True:
            if self._failed is not None:
                if self._done:
                    return None
                self._done = True
                return self._failed
            buf = self._buf
            pos = self._pos
            if pos >= len(buf):
                if pos:
                    del buf[:]
                    self._pos = self._at = self._scan = self._hr_after = 0
                return None
            if pos >= _COMPACT_AT and self._remaining == 0 and self._bulklen == -1:
                del buf[:pos]
                self._scan -= pos
                self._hr_after = max(self._hr_after - pos, 0)
                self._pos = self._at = pos = 0
            if buf[pos] == 0x2A:  # '*'
                if self._use_hiredis and self._remaining == 0:
                    argv = self._hiredis_command()
                    if argv is not None:
                        return argv
                result = self._multibulk()
            else:
                result = self._inline()
            if result is None:
                if self._failed is None:
                    return None
                continue
            if result:  # an empty command (`*0`, blank line) is skipped
                return result

    # -- hiredis fast path --

    def _hiredis_command(self) -> list[bytes] | None:
        buf = self._buf
        pos = self._pos
        if not self._hr_synced:
            if pos < self._hr_after:  # hiredis failed on these bytes, or must not see them
                return None
            if _COUNT.match(buf, pos) is None:  # header incomplete: no re-feed per byte
                return None
            if (
                len(buf) - pos > _HR_MAX
                or _BIG_HEAD.match(buf, pos) is not None
                or _BIG_AGGREGATE.search(buf, pos) is not None
            ):
                self._hr_after = len(buf)
                return None
            self._hr = _hiredis.Reader()
            self._hr.feed(bytes(buf[pos:]))
            self._hr_synced = True
        try:
            reply = self._hr.gets()
        except Exception:
            reply = False
        if type(reply) is list and reply and len(reply) <= MAX_MULTIBULK:
            n = len(reply)
            at = pos + 3 + len(str(n))
            max_bulk = self.max_bulk
            limited = not self.authenticated
            if limited and n > UNAUTH_MAX_MULTIBULK:
                at = -1
            else:
                for arg in reply:
                    if type(arg) is not bytes or buf[at] != 0x24:
                        at = -1
                        break
                    size = len(arg)
                    if size > max_bulk or (limited and size > UNAUTH_MAX_BULK):
                        at = -1
                        break
                    at += 5 + len(str(size)) + size
            if at >= 0:
                self._pos = self._scan = self._at = at
                return reply
        # not a canonical complete multibulk: the pure parser decides this one
        self._hr_off()
        return None

    def _hr_off(self) -> None:
        """Drop the mirror; no new one until the pure parser read what is buffered now
        (a new mirror copies the rest of the buffer: one per request would be quadratic)."""
        self._hr = None
        self._hr_synced = False
        self._hr_after = len(self._buf)

    # -- pure-Python multibulk --

    def _line_end(self, start: int, what: bytes) -> int:
        """Index of the `\\r` ending the header line at `start`, -1 = need more, -2 = failed."""
        buf = self._buf
        limit = start + INLINE_MAX + 1
        idx = -1
        if not self._stalled:
            lo = max(self._scan, start)
            idx = buf.find(b"\r", lo, limit)
            if buf.find(b"\x00", lo, idx if idx >= 0 else len(buf)) >= 0:
                self._stalled = True  # Redis's strchr stops at a NUL: the line never ends
                idx = -1
        if idx < 0:
            if len(buf) - start > INLINE_MAX:
                self._fail(b"too big " + what + b" count string")
                return -2
            self._scan = len(buf)
            return -1
        if idx + 1 >= len(buf):  # Redis needs one more byte (it skips it unseen)
            self._scan = idx
            return -1
        return idx

    def _complete_multibulk(self) -> list[bytes] | None:
        """Fast path: a whole, canonically written multibulk at _pos, else None.

        The regexes accept only what the general path accepts too (positive counts,
        `$` lengths in canonical digits), so when this returns argv the general path
        would return the same; anything else, including "incomplete", goes there.
        """
        buf = self._buf
        m = _COUNT.match(buf, self._pos)
        if m is None:
            return None
        count = int(m.group(1))
        if count > MAX_MULTIBULK or (count > UNAUTH_MAX_MULTIBULK and not self.authenticated):
            return None
        at = m.end() + 1
        end_of_buf = len(buf)
        limit = self.max_bulk if self.authenticated else min(self.max_bulk, UNAUTH_MAX_BULK)
        argv = []
        match_len = _LENGTH.match
        for _ in range(count):
            m = match_len(buf, at)
            if m is None:
                return None
            size = int(m.group(1))
            start = m.end() + 1
            stop = start + size
            if size > limit or stop + 2 > end_of_buf:
                return None
            argv.append(bytes(buf[start:stop]))
            at = stop + 2
        self._pos = self._at = self._scan = at
        if self._hr_synced:
            self._hr_off()
        return argv

    def _multibulk(self) -> list[bytes] | None:
        buf = self._buf
        if self._remaining == 0:
            fast = self._complete_multibulk()
            if fast is not None:
                return fast
            pos = self._pos
            nl = self._line_end(pos, b"mbulk")
            if nl < 0:
                return None
            count = _string2ll(bytes(buf[pos + 1 : nl]))
            if count is None or count > MAX_MULTIBULK:
                self._fail(b"invalid multibulk length")
                return None
            if count > UNAUTH_MAX_MULTIBULK and not self.authenticated:
                self._fail(b"unauthenticated multibulk length")
                return None
            self._at = self._scan = nl + 2
            if count <= 0:
                return self._finish(nl + 2)
            self._remaining = count
            self._argv = []
        while self._remaining:
            at = self._at
            if self._bulklen == -1:
                nl = self._line_end(at, b"bulk")
                if nl < 0:
                    self._check_request_size()
                    return None
                if buf[at] != 0x24:  # '$'
                    got = bytes(buf[at : at + 1]) if buf[at] else b""  # %c of NUL ends the string
                    self._fail(b"expected '$', got '" + got + (b"'" if got else b""))
                    return None
                size = _string2ll(bytes(buf[at + 1 : nl]))
                if size is None or size < 0 or size > self.max_bulk:
                    self._fail(b"invalid bulk length")
                    return None
                if size > UNAUTH_MAX_BULK and not self.authenticated:
                    self._fail(b"unauthenticated bulk length")
                    return None
                self._bulklen = size
                self._at = at = self._scan = nl + 2
            end = at + self._bulklen
            if len(buf) < end + 2:
                self._check_request_size()
                return None
            self._argv.append(bytes(buf[at:end]))
            self._at = self._scan = end + 2
            self._bulklen = -1
            self._remaining -= 1
        argv = self._argv
        self._argv = []
        return self._finish(self._at, argv)

    def _check_request_size(self) -> None:
        if len(self._buf) - self._pos > self.max_request:
            self._fail_raw(b"-ERR Protocol error: query buffer limit exceeded\r\n")

    # -- inline --

    def _inline(self) -> list[bytes] | None:
        buf = self._buf
        pos = self._pos
        nl = -1
        if not self._stalled:
            lo = max(self._scan, pos)
            nl = buf.find(b"\n", lo, pos + INLINE_MAX + 1)
            if buf.find(b"\x00", lo, nl if nl >= 0 else len(buf)) >= 0:
                self._stalled = True  # as in Redis, a NUL hides the newline after it
                nl = -1
        if nl < 0:
            if len(buf) - pos > INLINE_MAX:
                self._fail(b"too big inline request")
                return None
            self._scan = len(buf)
            return None
        end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
        argv = split_inline(bytes(buf[pos:end]))
        if argv is None:
            self._fail(b"unbalanced quotes in request")
            return None
        return self._finish(nl + 1, argv)

    # -- state changes --

    def _finish(self, next_pos: int, argv: list[bytes] | None = None) -> list[bytes]:
        self._pos = self._at = self._scan = next_pos
        self._remaining = 0
        self._bulklen = -1
        self._stalled = False
        if self._hr_synced:  # the mirror does not know what the pure parser ate
            self._hr_off()
        return argv if argv is not None else []

    def _fail(self, text: bytes) -> None:
        self._fail_raw(_failure(text).reply)

    def _fail_raw(self, reply: bytes) -> None:
        self._failed = ProtocolFailure(reply)
        self._buf = bytearray()
        self._pos = self._at = self._scan = 0
        self._argv = []
        self._hr = None
        self._hr_synced = False
