"""bench/report.py: sections come from bench/results/, else are kept from the old page."""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import MagicMock

import pytest

from bench import report

OLD = """# Benchmarks

Last written long ago.

## Embedded engine vs peers

Source: `bench/embedded.py`.

**old embedded table**

![Put, get and batch put per store](img/embedded-ops.png)

## Client library CPU per operation

*Not run yet: `python -m bench client`.*
"""


def test_previous_sections_splits_at_second_level_headings() -> None:
    sections = report.previous_sections(OLD)
    assert list(sections) == ["Embedded engine vs peers", "Client library CPU per operation"]
    assert sections["Embedded engine vs peers"] == (
        "Source: `bench/embedded.py`.\n\n**old embedded table**\n\n"
        "![Put, get and batch put per store](img/embedded-ops.png)"
    )


def test_absent_results_keep_the_old_section_and_present_ones_replace_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    (tmp_path / "cli.md").write_text("_cli: fresh._\n\n**start-up**\n")
    doc = report.render(None, report.previous_sections(OLD))
    # kept word for word, plot link included
    assert "**old embedded table**\n\n![Put, get and batch put per store]" in doc
    # a section that was "Not run yet" and still has no results stays so
    assert "*Not run yet: `python -m bench client`.*" in doc
    # never run and never published
    assert "*Not run yet: `python -m bench sharding`.*" in doc
    # results present: rebuilt from them
    assert "## Command line: start-up and piped mode vs redis-cli\n\nSource: `bench/cli.py`." in doc
    assert "_cli: fresh._\n\n**start-up**" in doc
    headings = [line for line in doc.splitlines() if line.startswith("## ")]
    assert headings == [f"## {heading}" for _, heading, _ in report.SECTIONS]


def _result(cpus: int, *tables: tuple[str, list[dict[str, object]]]) -> report.Result:
    return {
        "meta": {"machine": {"cpus": cpus}},
        "tables": [{"title": title, "rows": rows} for title, rows in tables],
    }


class _FakePlt:
    """Records what the plot functions draw, in place of matplotlib.pyplot."""

    def __init__(self) -> None:
        self.axes: list[MagicMock] = []
        self.fig = MagicMock()

    def subplots(self, nrows: int = 1, ncols: int = 1, **_: object) -> tuple[object, object]:
        self.axes = [MagicMock() for _ in range(nrows * ncols)]
        return self.fig, (self.axes if len(self.axes) > 1 else self.axes[0])

    def close(self, fig: object) -> None:
        assert fig is self.fig


def _bar_heights(ax: MagicMock) -> list[list[float]]:
    return [list(c.args[1]) for c in ax.bar.call_args_list]


def test_redis_plots_pair_each_bitcask_row_with_its_redis_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "IMG", tmp_path)
    rows = [
        {"test": "SET", "depth": 1, "server": "bitcask --sync never", "rps": 20e3, "cpu": 25.0},
        {"test": "SET", "depth": 1, "server": "redis (no persistence)", "rps": 60e3, "cpu": 8.0},
    ]
    durable = [
        {"test": "SET", "depth": 16, "server": "bitcask --sync always", "rps": 9e3, "cpu": 40.0},
        {"test": "SET", "depth": 16, "server": "redis appendfsync always", "rps": 30e3, "cpu": 9.0},
    ]
    dialects = [
        {"test": "put / SET", "depth": 1, "binary": 20.0, "hiredis": 24.0, "pure": 28.0},
    ]
    result = _result(
        2,
        ("redis-benchmark: x", rows),
        ("durable writes: y", durable),
        ("RESP vs binary on one bitcask-server", dialects),
    )
    plt = _FakePlt()
    assert report.plot_redis_benchmark(plt, result) == "img/redis-benchmark.png"
    throughput, cpu = plt.axes
    assert _bar_heights(throughput) == [[20.0, 9.0], [60.0, 30.0]]  # bitcask, then redis
    assert _bar_heights(cpu) == [[25.0, 40.0], [8.0, 9.0]]
    assert report.plot_redis_dialects(plt, result) == "img/redis-dialects.png"
    assert _bar_heights(plt.axes[0]) == [[20.0], [24.0], [28.0]]
    assert plt.axes[0].hlines.call_args.args[0] == pytest.approx(26.0)  # the 1.3x line
    assert report.plot_redis_benchmark(plt, _result(2)) is None


def test_sharding_section_says_how_many_cores_bound_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "IMG", tmp_path)
    proxy = [{"setup": "nutcracker, 2 bitcask shards", "set": 10e3, "get": 12e3}]
    client = [{"setup": "connect_sharded, 2 bitcask shards", "put": 8e3, "get": 9e3}]
    result = _result(2, ("through nutcracker: z", proxy), ("sharded client: w", client))
    (tmp_path / "sharding.json").write_text(json.dumps(result))
    (tmp_path / "sharding.md").write_text("_sharding: fresh._\n")
    plt = _FakePlt()
    doc = report.render(plt)
    assert "shares 2 cores, so 3 shards cannot show more" in doc
    assert "![Sharding: proxy and sharded client throughput](img/sharding.png)" in doc
    through, sharded = plt.axes
    assert _bar_heights(through) == [[10.0], [12.0]]
    assert _bar_heights(sharded) == [[8.0], [9.0]]
