"""docs/operations.md's Log lines table names every line the server and the engine log.

Every logging call in server/ and bitcask/ (``log.info(...)``, a LogThrottle's
``.log(kind, level, ...)``) is read with ast; the literal words of its message, up
to its first placeholder, must appear in the table's row of the same level. A new
log line without its row fails here, so the operator's list stays whole.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}
LEVELS |= {"exception": "ERROR", "DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING"}
LEVELS |= {"ERROR": "ERROR"}
PLACEHOLDER = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfgx]")
SHORTEST = 6  # a literal part shorter than this names nothing ("%s in %s")


def logged() -> list[tuple[str, str, str]]:
    """(where, level, message format) for each logging call with a literal message."""
    found = []
    for package in ("server", "bitcask"):
        for path in sorted((ROOT / package).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                name, args = node.func.attr, node.args
                if name == "log" and len(args) >= 3 and isinstance(args[1], ast.Attribute):
                    level, msg = args[1].attr, args[2]  # LogThrottle.log(kind, level, msg)
                elif name in LEVELS and isinstance(node.func.value, ast.Name) and args:
                    level, msg = name, args[0]
                else:
                    continue
                if isinstance(msg, ast.Constant) and isinstance(msg.value, str):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.append((where, LEVELS[level], msg.value))
    return found


def table() -> dict[str, str]:
    """Level -> the text of the table's rows of that level."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("### Log lines", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip() in LEVELS.values():
            rows[cells[1].strip()] = rows.get(cells[1].strip(), "") + line
    return rows


def test_every_log_line_has_its_row() -> None:
    rows = table()
    calls = logged()
    assert len(calls) > 40, "the walk found too few logging calls"
    missing = []
    for where, level, fmt in calls:
        words = [p.strip(" ;:(") for p in PLACEHOLDER.split(fmt)]
        first = next((w for w in words if len(w) >= SHORTEST), None)
        if first is None:
            continue
        first = first.split(" (")[0].split("; ")[0]  # the row names the line, not its tail
        if first not in rows.get(level, ""):
            missing.append(f"{where}: {level} {fmt!r} (looked for {first!r})")
    assert not missing, "log lines docs/operations.md's Log lines table lacks:\n" + "\n".join(
        missing
    )
