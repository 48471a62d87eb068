"""The import rules of DESIGN.md, checked by walking every module's imports with ast.

Layers, top to bottom: repl, client, server, protocol, bitcask. An import may only
point down, and some pairs are closed even though they point down:
client never imports server or bitcask; repl never imports server.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bitcask", "protocol", "server", "client", "repl")

# package -> project packages it may import
ALLOWED_PROJECT = {
    "bitcask": set(),
    "protocol": set(),
    "server": {"bitcask", "protocol"},
    "client": {"protocol"},
    "repl": {"client", "protocol", "bitcask"},
}
# package -> third-party distributions it may import (None: any)
ALLOWED_THIRD_PARTY: dict[str, set[str] | None] = {
    "bitcask": set(),
    "protocol": {"msgpack", "hiredis"},  # hiredis: optional (the `fast` extra), DESIGN.md
    "server": None,
    "client": {"msgpack", "uvloop"},
    "repl": None,
}
# standard-library modules a sans-IO layer must not touch
FORBIDDEN_STDLIB = {"protocol": {"asyncio", "socket", "selectors", "ssl"}}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down(package: str) -> None:
    bad: list[str] = []
    for path in _modules(package):
        for lineno, top in _imports(path):
            where = f"{path.relative_to(ROOT)}:{lineno} imports {top}"
            if top == package or top == "__future__":
                continue
            if top in PACKAGES:
                if top not in ALLOWED_PROJECT[package]:
                    bad.append(where)
            elif top in sys.stdlib_module_names:
                if top in FORBIDDEN_STDLIB.get(package, set()):
                    bad.append(where)
            else:
                allowed = ALLOWED_THIRD_PARTY[package]
                if allowed is not None and top not in allowed:
                    bad.append(where)
    assert not bad, "imports against DESIGN.md layering:\n" + "\n".join(bad)


def test_every_package_has_modules() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file()
        assert (ROOT / package / "py.typed").is_file()


def test_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import server\nfrom bitcask import open\nfrom . import x\n")
    assert [top for _, top in _imports(bad)] == ["server", "bitcask"]
