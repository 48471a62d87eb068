"""Watching a running server: `health` (HTTP probe), `stat` (live view), `latency`.

`stat` prints one line per interval, like `redis-cli --stat`, with a header every
20 lines; ops/s is the difference of the server's request counter between two
samples. `latency` times `ping` round trips and summarises them. Both stop after
`--count` or on Ctrl-C (the summary is still printed).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ._context import DEFAULT_PORT, CommandError, ConnectOptions, Context, dumb_terminal
from ._format import Reply, Table, Text, flatten
from ._progress import human_bytes

__all__ = ["health", "latency", "ops_counter", "percentile", "stat"]

# server counters that count requests served, in order of preference (the last is
# Redis's INFO field: a redis:// endpoint's ops/s, as redis-cli --stat shows it)
_OPS_COUNTERS = (
    "requests",
    "ops",
    "commands",
    "requests_total",
    "ops_total",
    "commands_total",
    "total_commands_processed",
)
HEADER_EVERY = 20


def _fetch(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _why(exc: BaseException, options: ConnectOptions) -> str:
    """A sentence for a failed HTTP probe, not `[Errno 111] Connection refused`."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return (
            "connection refused (is the server running, with its HTTP port on "
            f"{options.http_port}? see --http-port / BITCASK_HTTP_PORT)"
        )
    if isinstance(reason, TimeoutError):
        return f"no answer within {options.timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return str(reason)


async def _health_options(ctx: Context) -> ConnectOptions:
    """The options whose `health_url` names the HTTP adapter of the server on --port.

    --http-port (or BITCASK_HTTP_PORT) is taken as given. Otherwise the server is asked
    (its stats report the HTTP port it bound: `bitcask --port 7400 health` means that
    server, not whatever answers on 7380). When it cannot be asked, the default pair
    (no --port) still probes 7380, as the HTTP adapter may answer while the binary
    port does not; a chosen --port gets an error instead of another server's health.
    A redis:// endpoint's INFO names no HTTP port: 7380 or --http-port, as given.
    """
    opts = ctx.options
    if opts.http_port_given or opts.redis:
        return opts
    try:
        stats = await (await ctx.client()).stats()
    except Exception as exc:  # refused, timed out, auth: the one line says which
        if opts.port == DEFAULT_PORT:
            return opts
        from ._session import describe

        raise CommandError(
            f"{describe(exc, opts)}; health asks the server on {opts.address} for its "
            "HTTP port: give that with --http-port to probe it directly"
        ) from None
    server = stats.get("server")
    port = server.get("http_port") if isinstance(server, Mapping) else None
    return replace(opts, http_port=port) if isinstance(port, int) and port > 0 else opts


async def health(ctx: Context, a: dict[str, Any]) -> Reply:
    """GET /health on the HTTP adapter; unhealthy or unreachable is an error (exit 2)."""
    options = await _health_options(ctx)
    url = options.health_url
    try:
        status, body = await asyncio.to_thread(_fetch, url, options.timeout)
    except (OSError, urllib.error.URLError) as exc:
        raise CommandError(f"cannot reach {url}: {_why(exc, options)}") from None
    try:
        data = json.loads(body)
        reply: Reply = Table(data) if isinstance(data, dict) else Text(body.decode())
    except ValueError:
        reply = Text(body.decode("utf-8", "replace").rstrip("\n"))
    if status != 200:
        ctx.emit(reply)
        raise CommandError(f"unhealthy: {url} answered HTTP {status}")
    return reply


def ops_counter(stats: Mapping[str, Any]) -> int | None:
    """Total requests served, from a stats map: a counter, or a map of per-method counts.

    Example:
        >>> ops_counter({"server": {"requests": {"get": 3, "put": 2}}})
        5
    """
    server = stats.get("server")
    for where in (server if isinstance(server, Mapping) else {}, stats):
        for name in _OPS_COUNTERS:
            val = where.get(name)
            if isinstance(val, Mapping):
                return sum(v for v in val.values() if isinstance(v, int))
            if isinstance(val, int) and not isinstance(val, bool):
                return val
    return None


def _first(rows: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        for key, val in rows.items():
            if key.rsplit(".", 1)[-1] == name and not isinstance(val, dict | list):
                return val
    return None


def _size(val: Any) -> str:
    return human_bytes(val) if isinstance(val, int | float) else "-"


_HEADER = (
    f"{'keys':>10} {'keydir':>10} {'live':>10} {'dead':>10} {'disk':>10} {'ops/s':>9} {'conns':>6}"
)


def stat_line(stats: Mapping[str, Any], ops_per_s: float | None) -> str:
    """One row of the `stat` view from a stats map."""
    rows = dict(flatten(stats))
    keys = _first(rows, "keys")
    conns = _first(rows, "connections", "clients", "connected_clients")
    ops = "-" if ops_per_s is None else f"{ops_per_s:,.0f}"
    return (
        f"{keys if keys is not None else '-':>10} {_size(_first(rows, 'keydir_bytes')):>10} "
        f"{_size(_first(rows, 'live_bytes')):>10} {_size(_first(rows, 'dead_bytes')):>10} "
        f"{_size(_first(rows, 'disk_bytes')):>10} {ops:>9} "
        f"{conns if conns is not None else '-':>6}"
    )


async def stat(ctx: Context, a: dict[str, Any]) -> None:
    """Print a stats line every interval until --count lines (or Ctrl-C)."""
    client = await ctx.client()
    count = int(a["count"] or 0)
    interval = float(a["interval"] or 1.0)
    last: tuple[float, int] | None = None
    printed = 0
    try:
        while not count or printed < count:
            if printed % HEADER_EVERY == 0:
                ctx.emit(Text(_HEADER))
            stats = await client.stats()
            now, ops = time.monotonic(), ops_counter(stats)
            rate = None
            if last is not None and ops is not None and now > last[0]:
                rate = max(0.0, (ops - last[1]) / (now - last[0]))
            if ops is not None:
                last = (now, ops)
            ctx.emit(Text(stat_line(stats, rate)))
            printed += 1
            if not count or printed < count:
                await asyncio.sleep(interval)
    except asyncio.CancelledError:  # Ctrl-C under asyncio.run: stop quietly
        return


def percentile(sorted_samples: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
        2.0
    """
    if not sorted_samples:
        raise ValueError("no samples")
    rank = max(1, int(-(-p * len(sorted_samples) // 100)))
    return sorted_samples[min(rank, len(sorted_samples)) - 1]


def summarize(samples_ms: list[float]) -> dict[str, float | int]:
    """min/avg/p50/p99/max of latency samples in milliseconds."""
    ordered = sorted(samples_ms)
    return {
        "samples": len(ordered),
        "min_ms": round(ordered[0], 3),
        "avg_ms": round(statistics.fmean(ordered), 3),
        "p50_ms": round(percentile(ordered, 50), 3),
        "p99_ms": round(percentile(ordered, 99), 3),
        "max_ms": round(ordered[-1], 3),
    }


async def latency(ctx: Context, a: dict[str, Any]) -> Reply:
    """Time `ping` round trips; the summary in milliseconds."""
    client = await ctx.client()
    count = int(a["count"] or 0)
    interval = 0.01 if a["interval"] is None else float(a["interval"])
    live = ctx.interactive and ctx.stderr.isatty() and not dumb_terminal()
    samples: list[float] = []
    drawn = 0.0
    try:
        while not count or len(samples) < count:
            start = time.perf_counter()
            await client.ping()
            samples.append((time.perf_counter() - start) * 1000.0)
            if live and time.monotonic() - drawn > 0.1:
                drawn = time.monotonic()
                s = summarize(samples)
                ctx.stderr.write(
                    f"\rmin {s['min_ms']:.3f}  avg {s['avg_ms']:.3f}  max {s['max_ms']:.3f} ms"
                    f"  ({len(samples)} samples)\x1b[K"
                )
                ctx.stderr.flush()
            if interval and (not count or len(samples) < count):
                await asyncio.sleep(interval)
    except asyncio.CancelledError:  # Ctrl-C under asyncio.run: summarise what we have
        pass
    if live:
        ctx.stderr.write("\r\x1b[K")
    if not samples:
        raise CommandError("no samples taken")
    return Table(summarize(samples))
