"""`bitcask import` / `bitcask export`: JSON lines in and out, pipelined.

Format, one object per line (the same both ways):

    {"key": "user:1", "value": "Ada"}
    {"key_b64": "AAE=", "value_b64": "/w=="}      bytes that are not UTF-8
    {"key": "s", "value": "t", "ttl": 30}         expires after 30 s

A key or value that decodes as UTF-8 is written as text; otherwise its field name
gets a `_b64` suffix and the bytes are base64 (standard alphabet, padded). Text is
written as UTF-8, but no character a terminal acts on is written as it is (`export -`
may go to one): json escapes C0 controls, and DEL, the C1 controls (U+0080-U+009F:
U+009B is a CSI) and the bidi controls (U+202E turns the rest of a line around) are
written as `\\uXXXX` escapes too.

Strategy: both directions stream with a bounded window of calls in flight on one
connection (`WINDOW` batches), so throughput comes from pipelining rather than
from holding the data set in memory. Import groups lines into `mput` batches (one
atomic call each, cut at `--batch` pairs or `BATCH_BYTES`, so a request frame stays
far below the frame limit); export pages keys with `scan` and fetches each page with
one `mget` plus the page's `ttl` calls (pipelined on the same connection, so keys
that expire keep their remaining time), writing pages strictly in key order as the
oldest call completes. A page of values too large for one reply frame is fetched
again one `get` at a time. A key that expires between its `mget` and its `ttl` is
left out, as it would be a moment later anyway.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
import math
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from client import ConnectionLostError, FrameTooLargeError, ServerError
from protocol import SCAN_MAX_COUNT, ErrorCode, ProtocolError

from ._context import CommandError, Context, error_text
from ._format import terminal_safe
from ._parse import quote
from ._progress import Progress

__all__ = ["decode_record", "encode_record", "export", "import_", "scan_page"]

WINDOW = 8  # batches in flight at once
DEFAULT_BATCH = min(500, SCAN_MAX_COUNT)
BATCH_BYTES = 8 << 20  # an import batch is also cut at this many key+value bytes


def _field(name: str, data: bytes) -> tuple[str, str]:
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError:
        return f"{name}_b64", base64.b64encode(data).decode("ascii")


def encode_record(key: bytes, value: bytes, ttl: float | None = None) -> bytes:
    """One JSON line (with its newline) for a pair; `ttl` is seconds left, if any.

    Example:
        >>> encode_record(b"k", b"\\xff")
        b'{"key": "k", "value_b64": "/w=="}\\n'
        >>> encode_record(b"k", b"v", ttl=2.5)
        b'{"key": "k", "value": "v", "ttl": 2.5}\\n'
    """
    obj: dict[str, Any] = dict((_field("key", key), _field("value", value)))
    if ttl is not None:
        obj["ttl"] = ttl
    text = _TERMINAL_ACTS_ON.sub(_json_escape, json.dumps(obj, ensure_ascii=False))
    return text.encode("utf-8") + b"\n"


# what json.dumps(ensure_ascii=False) leaves raw and a terminal acts on: DEL, C1, the
# bidi embeddings, overrides, isolates and marks (ALM, LRM, RLM), LS and PS
_TERMINAL_ACTS_ON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _take(obj: dict[str, Any], name: str, lineno: int) -> bytes:
    if isinstance(obj.get(name), str):
        try:
            return str(obj[name]).encode("utf-8")
        except UnicodeEncodeError:  # JSON allows a lone surrogate escape ("\ud800")
            raise CommandError(
                f'line {lineno}: "{name}" is not valid Unicode text (a lone surrogate '
                f'escape); bytes go in "{name}_b64"'
            ) from None
    b64 = obj.get(f"{name}_b64")
    if isinstance(b64, str):
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise CommandError(f"line {lineno}: {name}_b64 is not valid base64") from None
    raise CommandError(f'line {lineno}: needs "{name}" (text) or "{name}_b64" (base64)')


def decode_record(line: bytes, lineno: int) -> tuple[bytes, bytes, float | None]:
    """(key, value, ttl) from one JSON line.

    Raises:
        CommandError: the line is not a valid record (the message names the line).

    Example:
        >>> decode_record(b'{"key_b64": "AA==", "value": "v", "ttl": 5}', 1)
        (b'\\x00', b'v', 5.0)
    """
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandError(f"line {lineno}: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise CommandError(f"line {lineno}: expected a JSON object")
    ttl = obj.get("ttl")
    if ttl is not None:
        try:  # NaN, Infinity, 1e400 and a 400-digit integer are JSON numbers too
            ttl = float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) else 0.0
        except OverflowError:
            ttl = math.inf
        if not (0 < ttl < math.inf):
            raise CommandError(f"line {lineno}: ttl must be a finite number of seconds > 0")
    return _take(obj, "key", lineno), _take(obj, "value", lineno), ttl


async def scan_page(
    client: Any, prefix: bytes, cursor: bytes | None, count: int
) -> tuple[bytes | None, list[bytes]]:
    """One page of `scan`: (next cursor or None when done, keys after `cursor`)."""
    next_cursor, keys = await client.scan_page(prefix, cursor, min(count, SCAN_MAX_COUNT))
    return (None if next_cursor is None else bytes(next_cursor)), [bytes(k) for k in keys]


@contextlib.contextmanager
def _open(path: str, mode: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer if "r" in mode else sys.stdout.buffer
        return
    try:
        with open(path, mode) as f:
            yield f
    except FileNotFoundError:
        raise CommandError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise CommandError(f"is a directory: {path}") from None
    except PermissionError:
        raise CommandError(f"permission denied: {path}") from None


@contextlib.contextmanager
def _open_aside(path: str) -> Iterator[IO[bytes]]:
    """Write to a temporary file beside `path`, renamed over it only on success.

    An interrupted export never leaves a partial file under the final name (nor
    replaces an older complete one); the temporary file is removed.
    """
    if path == "-":
        yield sys.stdout.buffer
        return
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.partial-{os.getpid()}")
    try:
        f = open(tmp, "wb")  # noqa: SIM115 (closed below, before the rename)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    with f:
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None


def _progress(ctx: Context, label: str, total: int | None, unit: str = "") -> Progress:
    return Progress(label, total, ctx.stderr, enabled=ctx.stderr.isatty(), unit=unit)


class _Window:
    """At most WINDOW calls in flight; the first failure is raised by the next wait."""

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.pending: collections.deque[asyncio.Task[Any]] = collections.deque()

    async def submit(self, coro: Any) -> Any | None:
        """Start `coro`; if the window is full, wait for (and return) the oldest result."""
        self.pending.append(asyncio.ensure_future(coro))
        if len(self.pending) > self.size:
            return await self.pending.popleft()
        return None

    async def drain(self) -> AsyncIterator[Any]:
        while self.pending:
            yield await self.pending.popleft()

    def cancel(self) -> None:
        for task in self.pending:
            task.cancel()
        self.pending.clear()


def _reply_too_large(exc: BaseException) -> bool:
    """The connection broke because a reply was over the frame limit (a big mget)."""
    if isinstance(exc, FrameTooLargeError):
        return True
    cause = exc.__cause__
    return isinstance(cause, ProtocolError) and cause.code == ErrorCode.FRAME_TOO_LARGE


def _server_error(exc: Exception, where: str) -> CommandError:
    return CommandError(f"{where}: {error_text(exc)}")


def _keys(n: int) -> str:
    return "1 key" if n == 1 else f"{n} keys"


def _summary(ctx: Context, line: str) -> None:
    """Summaries go to stderr, so `export -` leaves stdout to the data; a file name
    in them is shown escaped (it may be anything a directory holds)."""
    ctx.stderr.write(terminal_safe(line) + "\n")
    ctx.stderr.flush()


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


class _BadLine(CommandError):
    """A line of the import file is not a record; everything before it went in."""


class _Done:
    """How far an import got: every line up to `line` is in the store (`keys` pairs)."""

    def __init__(self) -> None:
        self.line = 0
        self.keys = 0

    def where(self) -> str:
        if not self.line:
            return "nothing was imported"
        return f"{_lines(1, self.line)} are in the store ({_keys(self.keys)})"


async def import_(ctx: Context, a: dict[str, Any]) -> None:
    """Stream a JSON lines file into the store with pipelined `mput` batches.

    Not all-or-nothing: each batch is atomic and batches complete in file order, so
    at any stop (a bad line, a refused batch, Ctrl-C, a lost connection) every line
    before some line N is in the store, and the message says which N.
    """
    client = await ctx.client()
    batch_size = int(a["batch"] or DEFAULT_BATCH)
    limits = (getattr(client, "server_info", None) or {}).get("limits") or {}
    if isinstance(limits.get("max_batch"), int) and limits["max_batch"] > 0:
        batch_size = min(batch_size, limits["max_batch"])
    window = _Window()
    done = _Done()

    async def send(
        pairs: dict[bytes, bytes],
        ttls: list[tuple[bytes, bytes, float, int]],
        first: int,
        last: int,
    ) -> tuple[int, int]:
        # every request of the batch is written now, in order (gather starts them in
        # that order), before any later batch's: waiting for the mput before sending
        # the TTL puts let the next batch's mput overtake them
        calls = [client.mput(pairs)] if pairs else []
        calls += [client.put(key, value, ttl=ttl) for key, value, ttl, _ in ttls]
        results = await asyncio.gather(*calls, return_exceptions=True)
        where = ([_lines(first, last)] if pairs else []) + [_lines(n, n) for *_, n in ttls]
        for result, lines in zip(results, where, strict=True):
            if isinstance(result, BaseException):  # the first refusal, by file order
                if not isinstance(result, Exception):
                    raise result
                raise _server_error(result, lines) from result
        return len(pairs) + len(ttls), last

    def completed(result: tuple[int, int] | None) -> None:
        if result is not None:
            done.keys += result[0]
            done.line = result[1]

    source = "stdin" if a["file"] == "-" else a["file"]
    with _open(a["file"], "rb") as f:
        total = os.fstat(f.fileno()).st_size if a["file"] != "-" else None
        bar = _progress(ctx, "import", total or None, unit="bytes")
        pairs: dict[bytes, bytes] = {}
        # lines with a TTL are sent after the batch's mput, so a later line without
        # one for the same key must not join this batch (it would be overwritten)
        ttls: list[tuple[bytes, bytes, float, int]] = []
        ttl_keys: set[bytes] = set()
        first = nread = batch_bytes = lineno = 0
        try:
            for lineno, line in enumerate(f, 1):
                nread += len(line)
                if not line.strip():
                    continue
                try:
                    key, value, ttl = decode_record(line, lineno)
                except CommandError as exc:
                    # the good lines before it still go in, so "how far" is exact
                    if pairs or ttls:
                        completed(await window.submit(send(pairs, ttls, first, lineno - 1)))
                    async for result in window.drain():
                        completed(result)
                    done.line = lineno - 1
                    raise _BadLine(
                        f"{source}: {exc}; stopped there: {done.where()}, nothing from "
                        f"line {lineno} on (fix it, then import again: a put overwrites)"
                    ) from None
                if ttl is None and key in ttl_keys:  # file order wins: cut the batch here
                    completed(await window.submit(send(pairs, ttls, first, lineno - 1)))
                    pairs, ttls, ttl_keys, first, batch_bytes = {}, [], set(), 0, 0
                first = first or lineno
                if ttl is None:
                    pairs.pop(key, None)
                    pairs[key] = value
                else:
                    ttls.append((key, value, ttl, lineno))
                    ttl_keys.add(key)
                batch_bytes += len(key) + len(value)
                if len(pairs) + len(ttls) >= batch_size or batch_bytes >= BATCH_BYTES:
                    completed(await window.submit(send(pairs, ttls, first, lineno)))
                    pairs, ttls, ttl_keys, first, batch_bytes = {}, [], set(), 0, 0
                    bar.update(nread)
            if pairs or ttls:
                completed(await window.submit(send(pairs, ttls, first, lineno)))
            async for result in window.drain():
                completed(result)
                bar.update(nread)
            done.line = lineno
        except _BadLine:  # already says how far it got
            bar.finish(ok=False)
            raise
        except CommandError as exc:
            window.cancel()
            bar.finish(ok=False)
            raise CommandError(f"{exc}; import stopped: {_so_far(done)}") from exc
        except BaseException:  # Ctrl-C, a lost connection: say how far it got
            window.cancel()
            bar.finish(ok=False)
            _summary(ctx, f"import of {source} interrupted: {_so_far(done)}")
            raise
    elapsed = bar.finish()
    rate = done.keys / elapsed if elapsed > 0 else 0.0
    _summary(
        ctx, f"imported {_keys(done.keys)} from {source} in {elapsed:.2f} s ({rate:,.0f} keys/s)"
    )
    return None


def _so_far(done: _Done) -> str:
    """After a stop with batches in flight: what is surely in, what may be."""
    return (
        f"{done.where()}; later lines may be partly imported "
        "(import again from the start: a put overwrites)"
    )


async def export(ctx: Context, a: dict[str, Any]) -> None:
    """Write every key with the prefix as JSON lines, in key order."""
    client = await ctx.client()
    prefix: bytes = a["prefix"] or b""
    total: int | None = None
    if not prefix:
        with contextlib.suppress(Exception):
            total = int((await client.stats()).get("keys"))
    window = _Window()
    count = 0
    not_strings: list[bytes] = []

    async def _string(key: bytes) -> bytes | object | None:
        try:
            value = await client.get(key)
        except ServerError as exc:
            if exc.name == "WRONGTYPE":
                return _NOT_A_STRING
            raise
        return None if value is None else bytes(value)

    async def fetch(keys: list[bytes]) -> list[tuple[bytes, bytes, float | None]]:
        try:
            values = await client.mget(keys)
        except (ConnectionLostError, FrameTooLargeError) as exc:
            if not _reply_too_large(exc):
                raise
            # a page of large values does not fit one reply frame: one get per key
            values = [await client.get(k) for k in keys]
        found = [(k, bytes(v)) for k, v in zip(keys, values, strict=True) if v is not None]
        # MGET answers nil for a key gone since the scan, and also for a Redis hash,
        # list or set: asked one by one, those answer WRONGTYPE and are counted, so an
        # export from redis-server never drops them without a word
        missing = [k for k, v in zip(keys, values, strict=True) if v is None]
        for key, value in zip(missing, await asyncio.gather(*map(_string, missing)), strict=True):
            if value is _NOT_A_STRING:
                not_strings.append(key)
            elif isinstance(value, bytes):
                found.append((key, value))
        found.sort()
        ttls = await asyncio.gather(*(client.ttl(k) for k, _ in found))
        # ttl: seconds left, -1 for none, -2 for gone (expired since the mget); a key
        # with under half a millisecond left keeps 0.001, not 0 (which import refuses)
        return [
            (k, v, None if t == -1 else max(round(t, 3), 0.001))
            for (k, v), t in zip(found, ttls, strict=True)
            if t != -2
        ]

    def write(out: IO[bytes], pairs: list[tuple[bytes, bytes, float | None]] | None) -> int:
        if not pairs:
            return 0
        out.write(b"".join(encode_record(k, v, t) for k, v, t in pairs))
        return len(pairs)

    with _open_aside(a["file"]) as out:
        bar = _progress(ctx, "export", total)
        page: list[bytes] = []
        try:
            async for key in client.scan(prefix=prefix, count=DEFAULT_BATCH):
                page.append(bytes(key))
                if len(page) >= DEFAULT_BATCH:
                    count += write(out, await window.submit(fetch(page)))
                    page = []
                    bar.update(count)
            if page:
                count += write(out, await window.submit(fetch(page)))
            async for pairs in window.drain():
                count += write(out, pairs)
            bar.update(count)
            out.flush()
        except BaseException:
            window.cancel()
            bar.finish(ok=False)
            if a["file"] != "-":
                _summary(ctx, f"export interrupted: {a['file']} was not written")
            raise
    elapsed = bar.finish()
    rate = count / elapsed if elapsed > 0 else 0.0
    dest = "stdout" if a["file"] == "-" else a["file"]
    _summary(ctx, f"exported {_keys(count)} to {dest} in {elapsed:.2f} s ({rate:,.0f} keys/s)")
    if not_strings:
        shown = ", ".join(quote(k) for k in not_strings[:5])
        more = ", ..." if len(not_strings) > 5 else ""
        raise CommandError(
            f"{_keys(len(not_strings))} not exported: not strings ({shown}{more}); export "
            "carries string values only (a Redis hash, list, set ... has no JSON line here)"
        )
    return None


_NOT_A_STRING = object()
