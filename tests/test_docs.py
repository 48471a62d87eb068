"""Every shell example in README.md and docs/*.md runs, so the docs cannot rot.

Convention for the docs (stated in docs/README.md of the docs folder too):
- Shell examples are fenced as ```console, one command per line after `$ `,
  followed by the output it prints. Output lines are compared exactly (trailing
  spaces ignored); a line `...` stands for any number of lines, and `…` inside a
  line for any text (timings, versions, pids). A command shown with no output
  lines must print nothing (its output was not compared before).
- Commands talk to the default ports 7379 (binary) and 7380 (HTTP); the test
  starts a real server per document on free loopback ports and rewrites those
  numbers, so the examples are the ones a reader pastes.
- A block that needs a server started with other flags says so on the line just
  above its fence: `<!-- docs-test: server --auth s3cret -->`. Its commands run
  against a server of their own started with those flags.
- Output ends with a newline (else the reader's next prompt is glued to it:
  `curl -w '\\n'` for raw values).
- Examples that write files keep them under `scratch/` (in .gitignore), with a
  name of their own per document, and remove them by the end of the document:
  the checkout is left as it was, and documents can be read in any order.
- A document whose examples call a program the machine lacks (bash, curl,
  redis-cli, xxd, ...: PEERS) is skipped with one line naming its Debian package,
  never under CI=true; `nc` has a Python stand-in in tests/bin.
- A few commands cannot run inside the suite (`make run` would start a second
  server in the foreground, `make test` would recurse, `kubectl`/`systemctl`
  need a cluster or init system). They are listed in NOT_RUN with the reason;
  nothing else is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_TIMEOUT = 60.0

# command prefix -> why the suite does not run it
NOT_RUN = {
    "make run": "starts the server in the foreground; every test starts one itself",
    "make test": "is the suite itself",
    "make bench": "takes minutes and measures; bench/ has its own quick smoke test",
    "make clean": "would delete the virtualenv the suite runs in",
    "git clone": "needs the network",
    "cd bitcask": "belongs to the clone step",
    "kubectl": "needs a Kubernetes cluster",
    "systemctl": "needs systemd",
    "sudo": "needs root and system directories",
    "bitcask-server": "starts a server in the foreground; the tests start their own",
    ". .venv/bin/activate": "changes the calling shell; the suite already has .venv/bin first",
}


# programs the examples call beyond Python and coreutils -> the Debian package. A
# document whose examples need one that is missing is skipped, naming the package
# (failed under CI=true, which has them all); `nc` has a stand-in in tests/bin.
PEERS = {
    "bash": "bash",
    "curl": "curl",
    "redis-cli": "redis-tools",
    "xxd": "xxd",
    "grep": "grep",
    "cmp": "diffutils",
    "sed": "sed",
}


def missing_peers(commands: list[str], path: str) -> list[str]:
    """`name (Debian package P)` for each program of PEERS the commands use and
    `path` lacks; bash always (every command runs in it)."""
    used = {"bash"} | {
        name
        for name in PEERS
        for command in commands
        if re.search(rf"(?<![\w./-]){re.escape(name)}(?![\w-])", command)
    }
    return [
        f"{name} (Debian package {PEERS[name]})"
        for name in sorted(used)
        if shutil.which(name, path=path) is None
    ]


def skip_without(missing: list[str], what: str) -> None:
    """Skip (fail under CI=true) with one line naming each missing program's package."""
    if missing:
        reason = f"{what}: {', '.join(missing)} not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ", required under CI=true")
        pytest.skip(reason)


@dataclass(frozen=True)
class Example:
    doc: Path
    line: int
    command: str
    expected: list[str]
    server_args: tuple[str, ...] = ()


_FENCE = re.compile(r"^```(\S*)")
_SERVER_NOTE = re.compile(r"^<!--\s*docs-test:\s*server\s*(.*?)\s*-->\s*$")


def examples(doc: Path) -> Iterator[Example]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        lang = match.group(1)
        body_start = i + 1
        end = body_start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if lang == "console":
            note = _SERVER_NOTE.match(lines[i - 1]) if i > 0 else None
            args = tuple(note.group(1).split()) if note else ()
            yield from _commands(doc, body_start, lines[body_start:end], args)
        i = end + 1


def _commands(
    doc: Path, first: int, block: list[str], server_args: tuple[str, ...] = ()
) -> Iterator[Example]:
    current: tuple[int, list[str]] | None = None
    expected: list[str] = []
    for offset, line in enumerate(block):
        if line.startswith("$ "):
            if current is not None:
                yield Example(doc, current[0], "\n".join(current[1]), expected, server_args)
            current, expected = (first + offset + 1, [line[2:]]), []
        elif current is not None and not expected and current[1][-1].endswith("\\"):
            current[1].append(line)  # continuation of a multi-line command
        elif current is not None:
            expected.append(line)
    if current is not None:
        yield Example(doc, current[0], "\n".join(current[1]), expected, server_args)


def not_run_reason(command: str) -> str | None:
    for prefix, reason in NOT_RUN.items():
        if command.startswith(prefix):
            return reason
    return None


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """`...` lines match any run of lines; `…` inside a line matches any text."""

    def line_ok(pattern: str, line: str) -> bool:
        parts = [re.escape(p) for p in pattern.rstrip().split("…")]
        return re.fullmatch(".*".join(parts), line.rstrip()) is not None

    def match(e: int, a: int) -> bool:
        if e == len(expected):
            return a == len(actual)
        if expected[e].strip() == "...":
            return any(match(e + 1, k) for k in range(a, len(actual) + 1))
        return a < len(actual) and line_ok(expected[e], actual[a]) and match(e + 1, a + 1)

    return match(0, 0)


def rewrite_ports(command: str, srv: ServerProcess) -> str:
    command = re.sub(r"(?<!\d)7379(?!\d)", str(srv.port), command)
    return re.sub(r"(?<!\d)7380(?!\d)", str(srv.http_port), command)


def search_path() -> str:
    """The virtualenv's scripts first; tests/bin (a Python `nc`) only if nc is missing."""
    dirs = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    if shutil.which("nc") is None:
        dirs.insert(1, str(ROOT / "tests" / "bin"))
    return os.pathsep.join(dirs)


def run(command: str, srv: ServerProcess, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": search_path(),
        "BITCASK_HOST": srv.host,
        "BITCASK_PORT": str(srv.port),
        "BITCASK_HTTP_PORT": str(srv.http_port),
        "NO_COLOR": "1",
        "HOME": str(cwd),
        "XDG_DATA_HOME": str(cwd / ".local" / "share"),
        "XDG_CONFIG_HOME": str(cwd / ".config"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", rewrite_ports(command, srv)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def _docs_with_examples() -> list[Path]:
    return [doc for doc in DOCS if doc.exists() and any(examples(doc))]


@pytest.mark.parametrize("doc", _docs_with_examples(), ids=lambda p: p.name)
def test_console_examples_run(
    doc: Path, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    run_here = [ex.command for ex in examples(doc) if not not_run_reason(ex.command)]
    skip_without(missing_peers(run_here, search_path()), f"the examples of {doc.name}")
    servers: dict[tuple[str, ...], ServerProcess] = {}
    work = tmp_path / "work"
    work.mkdir()
    if (ROOT / "examples").is_dir():
        (work / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    failures: list[str] = []
    before = set(os.listdir(work))
    for ex in examples(doc):
        if not_run_reason(ex.command):
            continue
        if ex.server_args not in servers:
            servers[ex.server_args] = server_factory(sync="always", extra=list(ex.server_args))
        result = run(ex.command, servers[ex.server_args], work)
        where = f"{doc.relative_to(ROOT)}:{ex.line}: $ {ex.command}"
        actual = (result.stdout + result.stderr).rstrip("\n").splitlines()
        if result.stdout and not result.stdout.endswith("\n"):
            failures.append(f"{where}\n  prints no trailing newline: {result.stdout[-40:]!r}")
        if result.returncode != 0 and not ex.expected:
            failures.append(f"{where}\n  exit {result.returncode}\n  " + "\n  ".join(actual))
        elif not output_matches(ex.expected, actual):  # no lines shown: it prints none
            failures.append(
                f"{where}\n  expected:\n    "
                + "\n    ".join(ex.expected)
                + "\n  got:\n    "
                + "\n    ".join(actual)
            )
    left = sorted(set(os.listdir(work)) - before - {".local", ".config", ".cache"})
    if "scratch" in left and not any((work / "scratch").iterdir()):
        left.remove("scratch")  # empty: git shows nothing, and it is in .gitignore
    if left:
        failures.append(
            f"{doc.relative_to(ROOT)}: its examples leave {left} behind (use scratch/ and clean up)"
        )
    assert not failures, "\n\n".join(failures)


def test_example_parser_reads_commands_and_output(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n```console\n$ bitcask put a 1\nOK\n$ printf 'x' \\\n  | cat\nx\n```\n"
        "```sh\n$ not-a-console-block\n```\n"
    )
    found = list(examples(doc))
    assert [e.command for e in found] == ["bitcask put a 1", "printf 'x' \\\n  | cat"]
    assert [e.expected for e in found] == [["OK"], ["x"]]
    assert found[0].line == 3


def test_a_block_can_ask_for_its_own_server_flags(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- docs-test: server --auth s3cret -->\n```console\n$ a\n```\n```console\n$ b\n```\n"
    )
    assert [(e.command, e.server_args) for e in examples(doc)] == [
        ("a", ("--auth", "s3cret")),
        ("b", ()),
    ]


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        pytest.param(["OK"], ["OK"], True, id="exact"),
        pytest.param(["OK"], ["NO"], False, id="differs"),
        pytest.param(["a", "...", "z"], ["a", "b", "c", "z"], True, id="ellipsis-lines"),
        pytest.param(["a", "..."], ["a"], True, id="ellipsis-empty"),
        pytest.param(["took … ms"], ["took 3.2 ms"], True, id="ellipsis-inline"),
        pytest.param(["a"], ["a", "b"], False, id="extra-output"),
        pytest.param([], ["OK"], False, id="output-the-doc-does-not-show"),
        pytest.param([], [], True, id="no-output"),
    ],
)
def test_output_matching(expected: list[str], actual: list[str], ok: bool) -> None:
    assert output_matches(expected, actual) is ok


def test_ports_are_rewritten(tmp_path: Path) -> None:
    srv = ServerProcess(data=tmp_path, port=41000, http_port=41001)
    cmd = "curl -s http://127.0.0.1:7380/health && bitcask --port 7379 get k 173790"
    assert rewrite_ports(cmd, srv) == (
        "curl -s http://127.0.0.1:41001/health && bitcask --port 41000 get k 173790"
    )


def test_make_alone_prints_the_targets() -> None:
    """`make` with no target is `make help`: every target with a line saying what it does."""
    skip_without(
        [f"{n} (Debian package {n})" for n in ("make", "sed") if shutil.which(n) is None],
        "make help",
    )
    result = subprocess.run(
        ["make", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert {"help", "run", "test", "lint", "typecheck", "pytest", "bench", "clean"} <= listed


def test_gitignore_covers_the_scratch_directory() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/scratch/" in ignored
