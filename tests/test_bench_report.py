"""bench/report.py: sections come from bench/results/, else are kept from the old page."""

from __future__ import annotations

from pathlib import Path

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
