"""Assemble docs/benchmarks.md and its plots from bench/results/*.json and *.md.

`python -m bench` runs this last; it can also run alone after any single
benchmark (`python -m bench.report`). Each section of the document is the
markdown fragment its benchmark wrote; the plots are drawn here from the JSON
(matplotlib, a bench-only dependency; without it the document is written with no
plots and says so). Tables are found by the start of their title, which the
benchmarks keep stable.

A section whose results are absent here (bench/results/ is not committed, so a
checkout that ran only some benchmarks has only theirs) keeps its text from the
docs/benchmarks.md being replaced, plots included, instead of turning into "Not
run yet": running one benchmark never erases the others' published numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"

SECTIONS = (
    ("embedded", "Embedded engine vs peers", "bench/embedded.py"),
    ("server", "Server on loopback vs the ceiling and Redis", "bench/server.py"),
    ("redis", "Redis protocol: redis-benchmark against bitcask-server and Redis", "bench/redis.py"),
    ("client", "Client library CPU per operation", "bench/client.py"),
    ("sharding", "Sharding: nutcracker and the sharded client", "bench/sharding.py"),
    ("cli", "Command line: start-up and piped mode vs redis-cli", "bench/cli.py"),
    ("backup", "Online backup (issue 14)", "bench/backup.py"),
)

Result = dict[str, Any]


def load(name: str) -> tuple[Result | None, str | None]:
    js, md = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    result = json.loads(js.read_text()) if js.exists() else None
    fragment = md.read_text().strip() if md.exists() else None
    return result, fragment


def table(result: Result | None, title_start: str) -> list[dict[str, Any]]:
    for t in (result or {}).get("tables", []):
        if str(t.get("title", "")).startswith(title_start):
            return list(t.get("rows", []))
    return []


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and v == v else None


# --------------------------------------------------------------------------- plots


def plot_embedded(plt: Any, result: Result | None) -> str | None:
    rows = table(result, "200,000 keys")
    rows = [r for r in rows if _num(r.get("put")) or _num(r.get("get"))]
    if not rows:
        return None
    stores = [str(r["store"]) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.27
    for i, (key, label) in enumerate((("put", "put"), ("get", "get"), ("batch", "batch put"))):
        values = [(_num(r.get(key)) or 0.0) / 1e3 for r in rows]
        ax.bar([x + (i - 1) * width for x in range(len(rows))], values, width, label=label)
    ax.set_xticks(range(len(rows)), stores, rotation=20, ha="right")
    ax.set_ylabel("thousand ops/s")
    ax.set_title("Embedded stores: 200,000 keys of 16 B, 100 B values (higher is better)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save(plt, fig, "embedded-ops.png")


def plot_server_throughput(plt: Any, result: Result | None) -> str | None:
    rows = table(result, "Servers on loopback")
    if not rows:
        return None
    servers = list(dict.fromkeys(str(r["server"]) for r in rows))
    depths = sorted({int(r["depth"]) for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=False)
    for ax, op in zip(axes, ("put", "get"), strict=True):
        width = 0.8 / max(1, len(depths))
        for i, depth in enumerate(depths):
            values = []
            for s in servers:
                match = [
                    r for r in rows if r["server"] == s and r["depth"] == depth and r["op"] == op
                ]
                values.append((_num(match[0].get("rate")) or 0.0) / 1e3 if match else 0.0)
            xs = [x + (i - (len(depths) - 1) / 2) * width for x in range(len(servers))]
            ax.bar(xs, values, width, label=f"pipeline depth {depth}")
        ax.set_xticks(range(len(servers)), servers, rotation=25, ha="right", fontsize=8)
        ax.set_title(f"{op} throughput, 50 connections")
        ax.set_ylabel("thousand ops/s")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(plt, fig, "server-throughput.png")


def plot_connection_sweep(plt: Any, result: Result | None) -> str | None:
    rows = table(result, "Throughput by connections")
    if not rows:
        return None
    conns = sorted(int(k[1:]) for k in rows[0] if k.startswith("c") and k[1:].isdigit())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, op in zip(axes, ("put", "get"), strict=True):
        for r in (r for r in rows if r.get("op") == op):
            ys = [(_num(r.get(f"c{n}")) or 0.0) / 1e3 for n in conns]
            ax.plot(conns, ys, marker="o", label=str(r["server"]))
        ax.set_xscale("log")
        ax.set_xticks(conns, [str(n) for n in conns])
        ax.set_xlabel("connections (one request in flight each)")
        ax.set_ylabel("thousand ops/s")
        ax.set_title(f"{op} throughput vs connections")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save(plt, fig, "server-connections.png")


def plot_server_latency(plt: Any, result: Result | None) -> str | None:
    rows = [r for r in table(result, "Servers on loopback") if r.get("op") == "put"]
    if not rows:
        return None
    labels = [f"{r['server']}\nd={r['depth']}" for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [_num(r.get("p50")) or 0 for r in rows], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [_num(r.get("p99")) or 0 for r in rows], 0.4, label="p99")
    ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("put latency, ms")
    ax.set_title("Put latency percentiles, 50 connections (lower is better)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save(plt, fig, "server-latency.png")


def plot_group_commit(plt: Any, result: Result | None) -> str | None:
    rows = table(result, "Group commit")
    rows = [r for r in rows if _num(r.get("rate"))]
    if not rows:
        return None
    writers = [int(r["writers"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(writers, [float(r["rate"]) for r in rows], marker="o", label="ops/s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent writers (connections, depth 1)")
    ax.set_ylabel("durable puts per second")
    ax.set_title("Group commit under --sync always")
    ax.grid(alpha=0.3)
    per = [_num(r.get("per_fsync")) for r in rows]
    if all(p is not None for p in per):
        ax2 = ax.twinx()
        ax2.plot(writers, per, marker="s", color="tab:orange", label="puts per fsync")
        ax2.set_ylabel("puts per fsync")
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return save(plt, fig, "group-commit.png")


def plot_client(plt: Any, result: Result | None) -> str | None:
    rows = [r for r in table(result, "Client CPU per op") if _num(r.get("us"))]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh([str(r["driver"]) for r in rows], [float(r["us"]) for r in rows])
    ax.set_xlabel("client CPU µs per operation (lower is better)")
    ax.set_title("Client libraries, 50 calls in flight, 100 B values")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save(plt, fig, "client-cpu.png")


def _bars(ax: Any, labels: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    """Grouped vertical bars: one group per label, one bar per series."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def plot_redis_benchmark(plt: Any, result: Result | None) -> str | None:
    """ops/s and server CPU µs/op per redis-benchmark test, bitcask-server beside Redis."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for title, suffix in (("redis-benchmark", ""), ("durable writes", "\ndurable")):
        for r in table(result, title):
            label = f"{r['test']} -P{r['depth']}{suffix}"
            kind = "bitcask-server" if str(r["server"]).startswith("bitcask") else "redis-server"
            groups.setdefault(label, {})[kind] = r
    if not groups:
        return None
    labels = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for ax, key, scale, ylabel, title in (
        (axes[0], "rps", 1e3, "thousand ops/s", "redis-benchmark throughput (higher is better)"),
        (axes[1], "cpu", 1.0, "server CPU µs/op", "server CPU per request (lower is better)"),
    ):
        series = {
            kind: [(_num(groups[g].get(kind, {}).get(key)) or 0.0) / scale for g in labels]
            for kind in ("bitcask-server", "redis-server")
        }
        _bars(ax, labels, series, ylabel)
        ax.set_title(title, fontsize=10)
    fig.suptitle("50 connections, 100 B values: bitcask-server --sync never/always vs Redis")
    fig.tight_layout()
    return save(plt, fig, "redis-benchmark.png")


def plot_redis_dialects(plt: Any, result: Result | None) -> str | None:
    """Server CPU per op: binary frames vs RESP with hiredis vs pure-Python RESP."""
    rows = [r for r in table(result, "RESP vs binary") if _num(r.get("binary"))]
    if not rows:
        return None
    labels = [f"{str(r['test']).split(' / ')[-1]} d={r['depth']}" for r in rows]
    series = {
        name: [_num(r.get(key)) or 0.0 for r in rows]
        for key, name in (("binary", "binary"), ("hiredis", "RESP, hiredis"),
                          ("pure", "RESP, pure Python"))
    }  # fmt: skip
    fig, ax = plt.subplots(figsize=(9, 4.2))
    _bars(ax, labels, series, "server CPU µs/op (lower is better)")
    for x, r in enumerate(rows):
        limit = 1.3 * float(r["binary"])
        ax.hlines(limit, x - 0.45, x + 0.45, colors="black", linestyles="dashed", linewidth=1)
    ax.set_title("RESP vs binary on one bitcask-server (dashed: 1.3x binary, issue 10)")
    fig.tight_layout()
    return save(plt, fig, "redis-dialects.png")


def plot_sharding(plt: Any, result: Result | None) -> str | None:
    """Throughput through nutcracker by shard count, and the sharded client's."""
    proxy = [r for r in table(result, "through nutcracker") if _num(r.get("set"))]
    client = [r for r in table(result, "sharded client") if _num(r.get("put"))]
    if not proxy and not client:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for ax, rows, keys, title in (
        (axes[0], proxy, (("set", "SET"), ("get", "GET")), "redis-benchmark, 50 connections"),
        (axes[1], client, (("put", "put"), ("get", "get")), "sharded client, 50 tasks"),
    ):
        labels = [
            str(r["setup"]).replace(", ", ",\n", 1).replace(" bitcask shard", " shard")
            for r in rows
        ]
        series = {name: [(_num(r.get(k)) or 0.0) / 1e3 for r in rows] for k, name in keys}
        _bars(ax, labels, series, "thousand ops/s")
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(title, fontsize=10)
    fig.suptitle("Sharding on one machine: what the proxy costs and what more shards buy")
    fig.tight_layout()
    return save(plt, fig, "sharding.png")


PLOTS: dict[str, list[tuple[str, Callable[[Any, Result | None], str | None]]]] = {
    "embedded": [("Put, get and batch put per store", plot_embedded)],
    "server": [
        ("Throughput by server and pipeline depth", plot_server_throughput),
        ("Throughput vs connections", plot_connection_sweep),
        ("Put latency percentiles", plot_server_latency),
        ("Group commit: durable puts/s as concurrent writers grow", plot_group_commit),
    ],
    "redis": [
        ("redis-benchmark: throughput and server CPU per op", plot_redis_benchmark),
        ("RESP vs binary: server CPU per op", plot_redis_dialects),
    ],
    "client": [("Client CPU per operation", plot_client)],
    "sharding": [("Sharding: proxy and sharded client throughput", plot_sharding)],
}


def _cpus(result: Result | None) -> str:
    cpus = ((result or {}).get("meta") or {}).get("machine", {}).get("cpus")
    return str(cpus) if cpus else "this machine's"


def intro_redis(result: Result | None) -> str:
    return (
        "Redis's own load generator, `redis-benchmark`, drives bitcask-server's RESP dialect "
        "and a real redis-server side by side in one run; server CPU per request comes from "
        "/proc and is steadier than ops/s on a shared machine. The last table compares the "
        "two dialects of one bitcask-server on the same operations (issue 10 asks RESP to "
        "cost at most 1.3x the binary dialect's server CPU per op)."
    )


def intro_sharding(result: Result | None) -> str:
    cpus = _cpus(result)
    return (
        "Throughput through nutcracker (twemproxy) in front of 1, 2 and 3 bitcask-servers, "
        "beside one bitcask-server reached directly, shows what the proxy costs and what "
        "sharding buys; redis-server rows are a reference for the proxy's own ceiling. The "
        "sharded client (`client.connect_sharded`) then drives the same shards. Every "
        f"process here (the shards, the proxy and the load generator) shares {cpus} cores, "
        "so 3 shards cannot show more than those cores give: on separate hosts each shard "
        "would have a core of its own."
    )


INTROS: dict[str, Callable[[Result | None], str]] = {
    "redis": intro_redis,
    "sharding": intro_sharding,
}


def save(plt: Any, fig: Any, name: str) -> str:
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / name, dpi=110)
    plt.close(fig)
    return f"img/{name}"


# --------------------------------------------------------------------------- document


def previous_sections(text: str) -> dict[str, str]:
    """Each `## heading` of an earlier document mapped to its body (up to the next one)."""
    sections: dict[str, str] = {}
    heading: str | None = None
    body: list[str] = []
    for line in [*text.splitlines(), "## "]:
        if line.startswith("## "):
            if heading is not None:
                sections[heading] = "\n".join(body).strip()
            heading, body = line[3:].strip(), []
        elif heading is not None:
            body.append(line)
    return sections


def render(plt: Any | None, previous: dict[str, str] | None = None) -> str:
    """The whole document; `previous` (see `previous_sections`) fills absent results."""
    today = dt.date.today().isoformat()
    parts = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`), which runs every benchmark one "
        "after another in one run and then writes this page and its plots "
        "(`python -m bench.report`). Speed is measured here, never asserted in a test: "
        "the machines are shared and noisy, so compare the ratios measured side by side "
        "in one run, not absolute numbers across machines.",
        "",
        f"Last written {today} on {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}.",
        "",
    ]
    if plt is None:
        parts += ["*(matplotlib is not installed: `make bench` installs it; no plots.)*", ""]
    for name, heading, source in SECTIONS:
        result, fragment = load(name)
        kept = (previous or {}).get(heading, "")
        if fragment is None and kept and "*Not run yet" not in kept:
            parts += [f"## {heading}", "", kept, ""]
            continue
        parts += [f"## {heading}", "", f"Source: `{source}`.", ""]
        if name in INTROS:
            parts += [INTROS[name](result), ""]
        if fragment is None:
            parts += [f"*Not run yet: `python -m bench {name}`.*", ""]
            continue
        parts += [_demote(fragment), ""]
        if plt is not None:
            for caption, draw in PLOTS.get(name, []):
                path = draw(plt, result)
                if path:
                    parts += [f"![{caption}]({path})", ""]
    return "\n".join(parts).rstrip() + "\n"


def _demote(fragment: str) -> str:
    """Fragments start their own headings at `#`/`##`; nest them under the section."""
    out = []
    for line in fragment.splitlines():
        out.append("#" + line if line.startswith("#") and not line.startswith("####") else line)
    return "\n".join(out)


def _pyplot() -> Any | None:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return None
    return pyplot


def main() -> int:
    plt = _pyplot()
    previous = previous_sections(DOC.read_text()) if DOC.exists() else {}
    DOC.write_text(render(plt, previous))
    print(
        f"wrote {DOC.relative_to(ROOT)}"
        + ("" if plt is None else f" and plots in {IMG.relative_to(ROOT)}")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
