"""Every relative link and #anchor in README.md and docs/ resolves, and every doc is
reachable: listed in docs/README.md's index, and linked from the top-level README.

Anchors are the ones GitHub makes from headings (lower-cased, punctuation dropped,
spaces to hyphens, `-1`, `-2` for repeats) plus explicit `<a id=...>`/`name=`.
Links inside fenced code blocks and inline code are not links and are ignored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = ROOT / "docs"
DOCS = [ROOT / "README.md", *sorted(DOCS_DIR.glob("*.md"))]

_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose(doc: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the lines outside fenced blocks, inline code removed."""
    fenced = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, re.sub(r"`[^`]*`", "", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    seen: Counter[str] = Counter()
    out: set[str] = set()
    fenced = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        out.update(_HTML_ID.findall(line))
        m = _HEADING.match(line)
        if m:
            base = slug(m.group(2))
            out.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return out


def links(doc: Path) -> Iterator[tuple[int, str]]:
    for number, text in prose(doc):
        for target in _LINK.findall(text):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto: ...
                yield number, target


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def broken(doc: Path) -> Iterator[str]:
    for number, target in links(doc):
        where = f"{_shown(doc)}:{number}: ({target})"
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / unquote(path_part)).resolve() if path_part else doc
        if not dest.exists():
            yield f"{where}: no file {_shown(dest)}"
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            yield f"{where}: no heading #{anchor} in {_shown(dest)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    bad = list(broken(doc))
    assert not bad, "\n".join(bad)


def test_the_docs_index_lists_every_document() -> None:
    index = DOCS_DIR / "README.md"
    linked = {(index.parent / t.partition("#")[0]).resolve() for _, t in links(index)}
    missing = [d.name for d in sorted(DOCS_DIR.glob("*.md")) if d != index and d not in linked]
    assert not missing, f"docs/README.md does not list {missing}"


def test_every_document_is_reachable_from_the_readme() -> None:
    seen: set[Path] = set()
    todo = [ROOT / "README.md"]
    while todo:
        doc = todo.pop()
        if doc in seen or not doc.exists() or doc.suffix != ".md":
            continue
        seen.add(doc)
        for _, target in links(doc):
            path_part = target.partition("#")[0]
            if path_part:
                todo.append((doc.parent / unquote(path_part)).resolve())
    unreachable = [d.name for d in DOCS if d.resolve() not in seen]
    assert not unreachable, f"no link path from README.md reaches {unreachable}"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        pytest.param("The config file", "the-config-file", id="plain"),
        pytest.param("`bitcask-shell` and `bitcask`", "bitcask-shell-and-bitcask", id="code"),
        pytest.param(
            "Redis-protocol endpoints (`redis://`)", "redis-protocol-endpoints-redis", id="punct"
        ),
        pytest.param("Limits, flags & defaults", "limits-flags--defaults", id="ampersand"),
    ],
)
def test_slug_is_githubs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Title\n\n## Part one\n\n## Part one\n")
    doc = tmp_path / "a.md"
    doc.write_text(
        "[ok](b.md#part-one) [ok2](b.md#part-one-1) [bad](b.md#part-two) [gone](c.md)\n"
        "`[not a link](x.md)` [web](https://example.com/x.md) [self](#nowhere)\n"
        "```\n[in a block](y.md)\n```\n"
    )
    assert anchors(tmp_path / "b.md") == {"title", "part-one", "part-one-1"}
    assert [b.split(": ", 1)[1] for b in broken(doc)] == [
        f"(b.md#part-two): no heading #part-two in {tmp_path / 'b.md'}",
        f"(c.md): no file {tmp_path / 'c.md'}",
        f"(#nowhere): no heading #nowhere in {doc}",
    ]
