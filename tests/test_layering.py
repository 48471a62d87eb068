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


# ------------------------------------- inside a package (bitcask/, server/, client/)

CYCLE_FREE = ("bitcask", "server", "client")


def _inner_imports(path: Path, package: str = "bitcask") -> set[str]:
    """The modules of ``package`` that ``path`` (one of its modules) imports, anywhere in
    the file: at the top, inside a function, or under ``if TYPE_CHECKING`` (each is an
    edge a cycle can run through), written relative or absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x
                found.update(alias.name for alias in node.names)
            elif node.level == 0 and node.module and node.module.split(".")[0] == package:
                parts = node.module.split(".")
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found.update(alias.name for alias in node.names)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(mod: str) -> list[str] | None:
        state[mod] = 1
        path.append(mod)
        for dep in sorted(graph.get(mod, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state:
            found = visit(mod)
            if found:
                return found
    return None


def _package_graph(package: str) -> dict[str, set[str]]:
    modules = {p.stem: p for p in _modules(package) if p.parent == ROOT / package}
    return {
        name: {dep for dep in _inner_imports(path, package) if dep in modules and dep != name}
        for name, path in modules.items()
        if name != "__init__"  # the package face re-exports everything
    }


@pytest.mark.parametrize("package", CYCLE_FREE)
def test_no_import_cycle_inside_the_package(package: str) -> None:
    graph = _package_graph(package)
    assert len(graph) > 3, f"{package}/ has too few modules: the graph was not read"
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle inside {package}/: " + " -> ".join(cycle or [])


def test_cycle_checker_sees_a_cycle(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    b = tmp_path / "b.py"
    b.write_text("def f():\n    from . import a\n")
    graph = {"a": _inner_imports(a), "b": _inner_imports(b)}
    assert graph == {"a": {"b"}, "b": {"a"}}
    assert _cycle(graph) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_cycle_checker_reads_absolute_imports(tmp_path: Path) -> None:
    m = tmp_path / "m.py"
    m.write_text(
        "import client._pool\nfrom client._batch import Batch\nfrom client import _args\n"
        "from server._outcome import Done\nimport protocol\n"
    )
    assert _inner_imports(m, "client") == {"_pool", "_batch", "_args"}
    assert _inner_imports(m, "server") == {"_outcome"}


def _foreign_private_reads(path: Path, root: Path = ROOT) -> list[str]:
    """``obj._field`` reads in ``path`` where ``obj`` is not ``self``/``cls`` and no class
    of the same module defines ``_field`` (a module may read its own classes' state)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "self" and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
    bad: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in own:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        bad.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)}")
    return bad


def test_no_engine_module_reads_another_modules_private_fields() -> None:
    bad = [line for path in _modules("bitcask") for line in _foreign_private_reads(path)]
    assert not bad, "private fields read across modules:\n" + "\n".join(bad)


def test_private_read_checker_sees_one(tmp_path: Path) -> None:
    m = tmp_path / "m.py"
    m.write_text(
        "class A:\n    def __init__(self):\n        self._mine = 1\n"
        "def f(a, db):\n    return a._mine + db._theirs\n"
    )
    assert [line.split()[-1] for line in _foreign_private_reads(m, tmp_path)] == ["db._theirs"]
