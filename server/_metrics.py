"""Server counters and histograms, rendered as Prometheus text (exposition format 0.0.4).

Strategy: everything here is touched only from the event-loop thread (the writer's
worker thread hands its timings back to the loop before they are recorded), so plain
ints and lists suffice: no locks. Histograms keep cumulative-at-render buckets: observe()
bumps one bucket found by bisect, render() accumulates.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Histogram", "Metrics"]

# Request latency, seconds: from the request being decoded to its reply being queued.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
)  # fmt: skip
# Requests per group commit (one write_batch call).
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# One write_batch call: one write plus (under --sync always) one fsync.
COMMIT_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
)  # fmt: skip


class Histogram:
    """A fixed-bucket histogram.

    Example:
        >>> h = Histogram((1, 2))
        >>> h.observe(1.5)
        >>> h.count, h.sum
        (1, 1.5)
    """

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.buckets = [0] * (len(self.bounds) + 1)  # last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def render(self, name: str, labels: str = "") -> list[str]:
        """Prometheus lines `name_bucket{le=...}`, `name_sum`, `name_count`."""
        sep = "," if labels else ""
        out = []
        acc = 0
        for bound, n in zip((*self.bounds, "+Inf"), self.buckets, strict=True):
            acc += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {acc}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {self.sum:.9g}")
        out.append(f"{name}_count{braces} {self.count}")
        return out


class Metrics:
    """All server-side counters. One instance per Server."""

    def __init__(self) -> None:
        self.started = time.time()
        self.errors: dict[tuple[str, str], int] = {}  # (method, error name) -> count
        self.latency: dict[str, Histogram] = {}  # method -> latency histogram
        self.group_size = Histogram(GROUP_BUCKETS)
        self.commit_seconds = Histogram(COMMIT_BUCKETS)
        self.connections = 0  # open now, both ports
        self.connections_total = 0
        self.connections_refused = 0
        self.http_requests: dict[int, int] = {}  # status -> count
        self.writer_depth = 0  # set by the writer
        self.writer_failures = 0

    def request(self, method: str, seconds: float, error: str | None = None) -> None:
        """Count one finished request (error: the ErrorCode name, or None)."""
        # Hot path (every request): Histogram.observe inlined; the request count of a
        # method is its histogram's count.
        if error is not None:
            if error == "UNKNOWN_METHOD":
                method = "unknown"  # never a label per made-up method name
            key = (method, error)
            self.errors[key] = self.errors.get(key, 0) + 1
        hist = self.latency.get(method)
        if hist is None:
            hist = self.latency[method] = Histogram(LATENCY_BUCKETS)
        hist.buckets[bisect_left(hist.bounds, seconds)] += 1
        hist.count += 1
        hist.sum += seconds

    def requests_done(self, method: str, seconds: float, n: int) -> None:
        """Count n successful requests of `method` that each took `seconds`."""
        hist = self.latency.get(method)
        if hist is None:
            hist = self.latency[method] = Histogram(LATENCY_BUCKETS)
        hist.buckets[bisect_left(hist.bounds, seconds)] += n
        hist.count += n
        hist.sum += seconds * n

    @property
    def requests(self) -> dict[str, int]:
        """Requests served, by method."""
        return {method: hist.count for method, hist in self.latency.items()}

    def group(self, requests: int, seconds: float) -> None:
        """Count one group commit of `requests` write requests taking `seconds`."""
        self.group_size.observe(requests)
        self.commit_seconds.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """The server counters for the `stats` method and /stats (JSON-serialisable)."""
        return {
            "uptime_seconds": round(time.time() - self.started, 3),
            "connections": self.connections,
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "requests": self.requests,
            "errors": {f"{m}:{e}": n for (m, e), n in self.errors.items()},
            "writer_queue_depth": self.writer_depth,
            "group_commits": self.group_size.count,
            "group_commit_requests_avg": (
                round(self.group_size.sum / self.group_size.count, 3)
                if self.group_size.count
                else 0.0
            ),
            "http_responses": {str(k): v for k, v in self.http_requests.items()},
        }

    def render(self, store: Mapping[str, Any], ready: bool) -> str:
        """The whole /metrics page. `store` is the engine's stats() dict."""
        lines: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        head("bitcask_requests_total", "counter", "Requests served, by method (all ports).")
        for method, hist in sorted(self.latency.items()):
            lines.append(f'bitcask_requests_total{{method="{method}"}} {hist.count}')
        head("bitcask_request_errors_total", "counter", "Error replies, by method and code.")
        for (method, err), n in sorted(self.errors.items()):
            lines.append(f'bitcask_request_errors_total{{method="{method}",code="{err}"}} {n}')
        head("bitcask_request_duration_seconds", "histogram", "Request latency inside the server.")
        for method, hist in sorted(self.latency.items()):
            lines.extend(hist.render("bitcask_request_duration_seconds", f'method="{method}"'))
        head("bitcask_http_responses_total", "counter", "HTTP responses, by status code.")
        for status, n in sorted(self.http_requests.items()):
            lines.append(f'bitcask_http_responses_total{{code="{status}"}} {n}')
        head("bitcask_group_commit_requests", "histogram", "Write requests per group commit.")
        lines.extend(self.group_size.render("bitcask_group_commit_requests"))
        head(
            "bitcask_fsync_duration_seconds",
            "histogram",
            "Duration of each group commit (one write_batch: one write, one fsync under sync=always).",
        )
        lines.extend(self.commit_seconds.render("bitcask_fsync_duration_seconds"))
        head("bitcask_writer_queue_depth", "gauge", "Write requests waiting for the writer.")
        lines.append(f"bitcask_writer_queue_depth {self.writer_depth}")
        head("bitcask_connections", "gauge", "Open client connections (binary + HTTP).")
        lines.append(f"bitcask_connections {self.connections}")
        head("bitcask_connections_total", "counter", "Connections accepted since start.")
        lines.append(f"bitcask_connections_total {self.connections_total}")
        head("bitcask_connections_refused_total", "counter", "Connections refused at the cap.")
        lines.append(f"bitcask_connections_refused_total {self.connections_refused}")
        gauges = (
            ("bitcask_keys", "keys", "Live keys in the store."),
            ("bitcask_live_bytes", "live_bytes", "Bytes of data files holding live records."),
            (
                "bitcask_dead_bytes",
                "dead_bytes",
                "Bytes of overwritten/deleted records (merge reclaims).",
            ),
            ("bitcask_disk_bytes", "disk_bytes", "Bytes of all data files."),
            ("bitcask_keydir_bytes", "keydir_bytes", "Memory held by the in-memory index."),
        )
        for name, key, text in gauges:
            if isinstance(store.get(key), int | float):
                head(name, "gauge", text)
                lines.append(f"{name} {store[key]}")
        head("bitcask_readonly", "gauge", "1 when the store refuses writes (see /stats).")
        lines.append(f"bitcask_readonly {1 if store.get('readonly_reason') else 0}")
        head("bitcask_ready", "gauge", "1 when /readyz answers 200.")
        lines.append(f"bitcask_ready {1 if ready else 0}")
        head("bitcask_uptime_seconds", "gauge", "Seconds since the server started.")
        lines.append(f"bitcask_uptime_seconds {time.time() - self.started:.3f}")
        return "\n".join(lines) + "\n"
