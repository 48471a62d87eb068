"""Server counters and histograms, rendered as Prometheus text (exposition format 0.0.4).

Strategy: everything here is touched only from the event-loop thread (the writer's
worker thread hands its timings back to the loop before they are recorded), so plain
ints and lists suffice: no locks. Histograms keep cumulative-at-render buckets: observe()
bumps one bucket found by bisect, render() accumulates.

Labels come from a fixed set, never from what a client sent: the binary methods, the
HTTP route names and one `other` (a made-up method, an unknown path, a key in a URL).
Every label's histogram exists from the start, so the hot path's one dict lookup both
finds the histogram and rejects a label outside the set; /metrics and /stats show only
labels that were used. Family names are unique once Prometheus strips `_total`,
`_bucket`, `_sum` and `_count` (prometheus_client's parser checks this in the tests).
"""

from __future__ import annotations

import os
import resource
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

import bitcask
from protocol import METHODS

__all__ = ["HTTP_ROUTES", "LABELS", "OTHER", "Histogram", "Metrics", "route_label"]

# Request latency, seconds: from the request being decoded to its reply being queued.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
)  # fmt: skip
# Requests per group commit (one write_group call).
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# One write_group call: one write plus (under --sync always) one fsync.
COMMIT_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
)  # fmt: skip

# HTTP requests answered without the dispatcher are labelled by route: the first path
# segment when it names one ("/kv/{key}" -> "kv"), else OTHER. "http_error": a request
# refused while parsing (400, 408, 413, 414, 431).
HTTP_ROUTES = ("health", "livez", "readyz", "metrics", "stats", "kv", "http_error")
OTHER = "other"
LABELS: frozenset[str] = frozenset((*METHODS, *HTTP_ROUTES, OTHER))


def route_label(path: bytes) -> str:
    """The metrics label of an HTTP path: its route's name, or "other"; never the key.

    Example:
        >>> route_label(b"/kv/secret"), route_label(b"/readyz"), route_label(b"/x/y")
        ('kv', 'readyz', 'other')
    """
    head = path.lstrip(b"/").split(b"/", 1)[0].decode("latin-1")
    return head if head in HTTP_ROUTES else OTHER


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
        # repr: every digit (as prometheus_client writes it); 9 significant digits
        # rounded the group-commit histogram's _sum (a count of requests) once past 1e9
        out.append(f"{name}_sum{braces} {self.sum!r}")
        out.append(f"{name}_count{braces} {self.count}")
        return out


class Metrics:
    """All server-side counters. One instance per Server.

    Args:
        labels: the request labels allowed (default LABELS); anything else counts as
            "other".
    """

    def __init__(self, labels: Iterable[str] = LABELS) -> None:
        self.started = time.monotonic()  # uptime: a wall clock step must not move it
        self.errors: dict[tuple[str, str], int] = {}  # (label, error name) -> count
        # label -> latency histogram, one per allowed label from the start (see Strategy)
        self.latency: dict[str, Histogram] = {
            label: Histogram(LATENCY_BUCKETS) for label in {*labels, OTHER}
        }
        self.group_size = Histogram(GROUP_BUCKETS)
        self.commit_seconds = Histogram(COMMIT_BUCKETS)
        self.connections = 0  # open now, both ports
        self.connections_total = 0
        self.connections_refused = 0
        # partial input (server/_held.py): bytes held now, connections refused for it,
        # and requests dropped at --request-timeout
        self.partial_input_bytes = 0
        self.partial_input_refused = 0
        self.request_timeouts = 0
        self.http_requests: dict[int, int] = {}  # status -> count
        self.writer_depth = 0  # set by the writer
        self.writer_failures = 0
        # --sync always: lingers started before a group commit, and those ended by
        # their time bound rather than by the requests they waited for (server/_writer.py)
        self.group_lingers = 0
        self.group_linger_timeouts = 0
        self.build_version = bitcask.__version__
        # online backup (server/_snapshots.py)
        self.snapshots_taken = 0
        self.snapshots_completed = 0  # every byte read, then snapshot_end
        self.snapshot_bytes_sent = 0
        self.snapshot_last_success = 0.0  # wall clock; 0: never

    def request(self, method: str, seconds: float, error: str | None = None) -> None:
        """Count one finished request (error: the ErrorCode name, or None)."""
        # Hot path (every request): Histogram.observe inlined; the request count of a
        # method is its histogram's count.
        hist = self.latency.get(method)
        if hist is None:
            method = OTHER  # never a label per made-up method name, path or key
            hist = self.latency[OTHER]
        if error is not None:
            key = (method, error)
            self.errors[key] = self.errors.get(key, 0) + 1
        hist.buckets[bisect_left(hist.bounds, seconds)] += 1
        hist.count += 1
        hist.sum += seconds

    def requests_done(self, method: str, seconds: float, n: int) -> None:
        """Count n successful requests of `method` that each took `seconds`."""
        hist = self.latency.get(method)
        if hist is None:
            hist = self.latency[OTHER]
        hist.buckets[bisect_left(hist.bounds, seconds)] += n
        hist.count += n
        hist.sum += seconds * n

    @property
    def requests(self) -> dict[str, int]:
        """Requests served, by label (labels never used are left out)."""
        return {label: hist.count for label, hist in self.latency.items() if hist.count}

    def group(self, requests: int, seconds: float) -> None:
        """Count one group commit of `requests` write requests taking `seconds`."""
        self.group_size.observe(requests)
        self.commit_seconds.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """The server counters for the `stats` method and /stats (JSON-serialisable)."""
        return {
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "connections": self.connections,
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "partial_input_bytes": self.partial_input_bytes,
            "partial_input_refused": self.partial_input_refused,
            "request_timeouts": self.request_timeouts,
            "requests": self.requests,
            "errors": {f"{m}:{e}": n for (m, e), n in self.errors.items()},
            "writer_queue_depth": self.writer_depth,
            "group_commits": self.group_size.count,
            "group_commit_lingers": self.group_lingers,
            "group_commit_linger_timeouts": self.group_linger_timeouts,
            "group_commit_requests_avg": (
                round(self.group_size.sum / self.group_size.count, 3)
                if self.group_size.count
                else 0.0
            ),
            "http_responses": {str(k): v for k, v in self.http_requests.items()},
            "snapshots": {
                "taken": self.snapshots_taken,
                "completed": self.snapshots_completed,
                "bytes_sent": self.snapshot_bytes_sent,
                "last_success": self.snapshot_last_success,
            },
        }

    def render(self, store: Mapping[str, Any], ready: bool) -> str:
        """The whole /metrics page. `store` is the engine's stats() dict."""
        lines: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        used = sorted((label, h) for label, h in self.latency.items() if h.count)
        head("bitcask_requests_total", "counter", "Requests served, by method or route.")
        for method, hist in used:
            lines.append(f'bitcask_requests_total{{method="{method}"}} {hist.count}')
        head(
            "bitcask_request_errors_total",
            "counter",
            "Error replies (HTTP 4xx/5xx included), by method or route and error code.",
        )
        for (method, err), n in sorted(self.errors.items()):
            lines.append(f'bitcask_request_errors_total{{method="{method}",code="{err}"}} {n}')
        head("bitcask_request_duration_seconds", "histogram", "Request latency inside the server.")
        for method, hist in used:
            lines.extend(hist.render("bitcask_request_duration_seconds", f'method="{method}"'))
        head("bitcask_http_responses_total", "counter", "HTTP responses, by status code.")
        for status, n in sorted(self.http_requests.items()):
            lines.append(f'bitcask_http_responses_total{{code="{status}"}} {n}')
        head("bitcask_group_commit_requests", "histogram", "Write requests per group commit.")
        lines.extend(self.group_size.render("bitcask_group_commit_requests"))
        head(
            "bitcask_fsync_duration_seconds",
            "histogram",
            "Duration of each group commit (one write_group: one write, one fsync under sync=always).",
        )
        lines.extend(self.commit_seconds.render("bitcask_fsync_duration_seconds"))
        head(
            "bitcask_group_commit_lingers_total",
            "counter",
            "Group commits that waited for more requests in flight (--sync always).",
        )
        lines.append(f"bitcask_group_commit_lingers_total {self.group_lingers}")
        head(
            "bitcask_group_commit_linger_timeouts_total",
            "counter",
            "Lingers ended by their time bound instead of by the requests they awaited.",
        )
        lines.append(f"bitcask_group_commit_linger_timeouts_total {self.group_linger_timeouts}")
        head("bitcask_writer_queue_depth", "gauge", "Write requests waiting for the writer.")
        lines.append(f"bitcask_writer_queue_depth {self.writer_depth}")
        head("bitcask_connections", "gauge", "Open client connections (binary + HTTP).")
        lines.append(f"bitcask_connections {self.connections}")
        # Not bitcask_connections_total: that is the same family as the gauge above.
        head("bitcask_connections_accepted_total", "counter", "Connections accepted since start.")
        lines.append(f"bitcask_connections_accepted_total {self.connections_total}")
        head("bitcask_connections_refused_total", "counter", "Connections refused at the cap.")
        lines.append(f"bitcask_connections_refused_total {self.connections_refused}")
        head(
            "bitcask_partial_input_bytes",
            "gauge",
            "Bytes held in requests not complete yet, all connections.",
        )
        lines.append(f"bitcask_partial_input_bytes {self.partial_input_bytes}")
        head(
            "bitcask_partial_input_refused_total",
            "counter",
            "Connections refused because the partial input was over --max-partial-input.",
        )
        lines.append(f"bitcask_partial_input_refused_total {self.partial_input_refused}")
        head(
            "bitcask_request_timeouts_total",
            "counter",
            "Requests dropped unfinished at --request-timeout.",
        )
        lines.append(f"bitcask_request_timeouts_total {self.request_timeouts}")
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
        lines.append(f"bitcask_uptime_seconds {time.monotonic() - self.started:.3f}")
        head("bitcask_build_info", "gauge", "Always 1; the version is in the label.")
        lines.append(f'bitcask_build_info{{version="{_escape(self.build_version)}"}} 1')
        for name, kind, text, value in (
            ("bitcask_snapshots_total", "counter", "Snapshots taken (snapshot_begin).",
             self.snapshots_taken),
            ("bitcask_snapshots_completed_total", "counter",
             "Snapshots read to the last byte and ended.", self.snapshots_completed),
            ("bitcask_snapshot_sent_bytes_total", "counter",
             "Bytes of snapshot files sent (snapshot_read).", self.snapshot_bytes_sent),
            ("bitcask_snapshot_last_success_timestamp_seconds", "gauge",
             "Unix time of the last completed snapshot; 0 if none.", self.snapshot_last_success),
        ):  # fmt: skip
            head(name, kind, text)
            lines.append(f"{name} {value}")
        for name, kind, text, value in process_metrics():
            head(name, kind, text)
            lines.append(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def process_metrics(proc: str = "/proc/self") -> list[tuple[str, str, str, float | int]]:
    """The standard process_* metrics (the names prometheus_client's ProcessCollector uses).

    Read from /proc (Linux); where a file is missing the metrics it feeds are left out.

    Returns:
        (name, type, help, value) for each metric that could be read.
    """
    out: list[tuple[str, str, str, float | int]] = []
    try:
        with open(f"{proc}/stat", "rb") as f:
            # Fields after the command name, which is in parentheses and may hold spaces.
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        vsize, rss = int(fields[20]), int(fields[21]) * resource.getpagesize()
        out.append(("process_cpu_seconds_total", "counter", "User and system CPU seconds.", cpu))
        out.append(("process_virtual_memory_bytes", "gauge", "Virtual memory size.", vsize))
        out.append(("process_resident_memory_bytes", "gauge", "Resident memory size.", rss))
        boot = _boot_time()
        if boot is not None:
            start = boot + int(fields[19]) / ticks
            out.append(
                (
                    "process_start_time_seconds",
                    "gauge",
                    "Start time of the process since the Unix epoch, seconds.",
                    float(start),
                )
            )
    except (OSError, IndexError, ValueError):
        pass
    try:
        fds = len(os.listdir(f"{proc}/fd"))
        out.append(("process_open_fds", "gauge", "Open file descriptors.", fds))
    except OSError:
        pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        out.append(("process_max_fds", "gauge", "Limit of open file descriptors (soft).", soft))
    return out


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None
