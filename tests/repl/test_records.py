"""Import/export records, latency statistics and the stat view's arithmetic."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repl._context import CommandError
from repl._monitor import ops_counter, percentile, stat_line, summarize
from repl._progress import Progress, human_bytes
from repl._transfer import decode_record, encode_record


def test_text_is_text_and_bytes_are_base64() -> None:
    assert json.loads(encode_record(b"k", "✓".encode())) == {"key": "k", "value": "✓"}
    assert json.loads(encode_record(b"\x00\xff", b"v")) == {"key_b64": "AP8=", "value": "v"}
    assert encode_record(b"k", b"v").endswith(b"\n")


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_records_round_trip(key: bytes, value: bytes) -> None:
    assert decode_record(encode_record(key, value), 1) == (key, value, None)


def test_ttl_is_read() -> None:
    assert decode_record(b'{"key": "a", "value": "b", "ttl": 1.5}', 1) == (b"a", b"b", 1.5)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        pytest.param(b"not json", "line 7: not JSON", id="json"),
        pytest.param(b"[1, 2]", "line 7: expected a JSON object", id="array"),
        pytest.param(b'{"value": "v"}', 'line 7: needs "key"', id="no-key"),
        pytest.param(b'{"key": "k"}', 'line 7: needs "value"', id="no-value"),
        pytest.param(b'{"key_b64": "***", "value": "v"}', "key_b64 is not valid base64", id="b64"),
        pytest.param(b'{"key": "k", "value": "v", "ttl": 0}', "ttl must be", id="ttl-zero"),
        pytest.param(b'{"key": "k", "value": "v", "ttl": true}', "ttl must be", id="ttl-bool"),
    ],
)
def test_bad_records_name_the_line(line: bytes, fragment: str) -> None:
    with pytest.raises(CommandError, match=fragment):
        decode_record(line, 7)


def test_percentiles_and_summary() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    s = summarize([2.0, 1.0, 3.0])
    assert s == {
        "samples": 3,
        "min_ms": 1.0,
        "avg_ms": 2.0,
        "p50_ms": 2.0,
        "p99_ms": 3.0,
        "max_ms": 3.0,
    }


def test_ops_counter_is_found_wherever_the_server_puts_it() -> None:
    assert ops_counter({"keys": 1, "server": {"requests": 42}}) == 42
    assert ops_counter({"server": {"requests": {"get": 40, "put": 2}}}) == 42
    assert ops_counter({"ops": 7}) == 7
    assert ops_counter({"keys": 1}) is None


def test_stat_line_shows_sizes_and_dashes_for_unknowns() -> None:
    line = stat_line({"keys": 12, "keydir_bytes": 2048, "live_bytes": 10, "dead_bytes": 0}, 1500.0)
    assert line.split() == ["12", "2.0", "KiB", "10", "B", "0", "B", "-", "1,500", "-"]


def test_progress_bar_draws_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    bar = Progress("import", 10, quiet)
    bar.update(5)
    bar.finish()
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    bar = Progress("import", 10, loud, enabled=True)
    bar.update(5)
    assert "[###############---------------]  50%  5/10" in bar.render()
    bar.finish()
    assert loud.getvalue().endswith("\n") and "import [" in loud.getvalue()
    spinner = Progress("check", None, io.StringIO(), enabled=True, unit="bytes")
    spinner.update(2048)
    assert "2.0 KiB" in spinner.render()
    assert human_bytes(5) == "5 B" and human_bytes(3 * 1024**3) == "3.0 GiB"


@pytest.mark.parametrize(
    "ttl", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400, "0", "-1", "true", '"5"']
)
def test_a_ttl_that_is_no_finite_positive_number_is_a_bad_line(ttl: str) -> None:
    # NaN passed the old `ttl <= 0` check and a 400-digit integer raised OverflowError
    # (the import then said "interrupted" instead of naming the line)
    line = b'{"key": "k", "value": "v", "ttl": ' + ttl.encode() + b"}"
    with pytest.raises(CommandError, match="line 7: ttl must be a finite number of seconds > 0"):
        decode_record(line, 7)
