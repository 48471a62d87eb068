"""The project as `pip install` gives it to a user, not as the checkout runs it.

Once per module, from a copy of the sources (so nothing is written into the checkout):
an sdist and a wheel through the build backend (setuptools, offline), and a second
wheel from the unpacked sdist (what `python -m build` ships). The first wheel goes
into a scratch venv with `pip install --no-index --no-deps`; the runtime dependencies
come from this suite's own site-packages through a .pth line (which does not run the
editable install's finder: an added directory's .pth files are not read), so no
network is needed. Everything then runs from a directory outside the checkout with
no PYTHONPATH, and each test checks the installed code was the code that answered.
"""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bitcask", "protocol", "server", "client", "repl")
SCRIPTS = ("bitcask-server", "bitcask", "bitcask-shell")
TIMEOUT = 120
# what a build reads of a checkout: its top-level files and the packages; tests/ too,
# which setuptools would put in the sdist (in part) unless MANIFEST.in prunes it
COPIED_DIRS = {*PACKAGES, "tests"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == ROOT
    return {
        n for n in names
        if n == "__pycache__" or n.endswith(".egg-info")
        or (top and (ROOT / n).is_dir() and n not in COPIED_DIRS)
    }  # fmt: skip


def _backend(source: Path, hook: str, out: Path) -> Path:
    """One PEP 517 hook of the build backend, run in `source`; the file it made."""
    out.mkdir()
    code = f"import sys, setuptools.build_meta as b; b.{hook}(sys.argv[1])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=source, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (made,) = out.iterdir()
    return made


def _contents(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {name: z.read(name) for name in z.namelist()}


@dataclass
class Installed:
    source: Path  # the copy the artifacts were built from
    wheel: Path
    sdist: Path
    wheel_from_sdist: Path
    venv: Path
    version: str  # bitcask.__version__ as the source writes it
    elsewhere: Path  # a working directory outside the checkout

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        return {**env, "HOME": str(self.elsewhere), "NO_COLOR": "1"}

    def run(self, program: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / program), *args],
            input=stdin, capture_output=True, text=True, cwd=self.elsewhere,
            env=self.env(), timeout=TIMEOUT, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_ignore, symlinks=True)
    sdist = _backend(source, "build_sdist", base / "sdist")
    wheel = _backend(source, "build_wheel", base / "wheel")
    with tarfile.open(sdist) as tar:
        tar.extractall(base / "unpacked", filter="data")
    (unpacked,) = (base / "unpacked").iterdir()
    wheel_from_sdist = _backend(unpacked, "build_wheel", base / "wheel2")

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(subprocess.check_output([python, "-c", where], text=True).strip())
    (purelib / "suite_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install",
         "-q", "--no-index", "--no-deps", "--disable-pip-version-check", str(wheel)],
        check=True, timeout=TIMEOUT, capture_output=True,
    )  # fmt: skip
    tree = ast.parse((source / "bitcask" / "__init__.py").read_text())
    (version,) = [
        n.value.value for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        and [getattr(t, "id", None) for t in n.targets] == ["__version__"]
    ]  # fmt: skip
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    yield Installed(source, wheel, sdist, wheel_from_sdist, venv, str(version), elsewhere)


def test_the_wheel_holds_the_packages_their_data_and_nothing_else(installed: Installed) -> None:
    names = set(_contents(installed.wheel))
    dist_info = f"bitcask-{installed.version}.dist-info/"
    shipped = {n for n in names if not n.startswith(dist_info)}
    # every file of the five packages (code, py.typed, default.toml, ...) and only those
    sources = {
        p.relative_to(installed.source).as_posix()
        for package in PACKAGES
        for p in (installed.source / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped == sources
    assert {f"{package}/py.typed" for package in PACKAGES} <= shipped
    assert "repl/default.toml" in shipped
    assert {n.split("/")[0] for n in names} == {*PACKAGES, dist_info.rstrip("/")}


def test_the_sdist_holds_no_tests_and_builds_the_same_wheel(installed: Installed) -> None:
    with tarfile.open(installed.sdist) as tar:
        tops = {Path(n).parts[1] for n in tar.getnames() if len(Path(n).parts) > 1}
    assert tops <= {*PACKAGES, "bitcask.egg-info", "PKG-INFO", "README.md", "pyproject.toml",
                    "setup.cfg", "MANIFEST.in", "LICENSE"}, tops  # fmt: skip
    assert _contents(installed.wheel) == _contents(installed.wheel_from_sdist)


def test_the_metadata_names_the_version_and_the_three_scripts(installed: Installed) -> None:
    files = _contents(installed.wheel)
    dist_info = f"bitcask-{installed.version}.dist-info"
    metadata = files[f"{dist_info}/METADATA"].decode()
    assert f"\nVersion: {installed.version}\n" in metadata
    assert "\nLicense-Expression: MIT\n" in metadata
    assert files[f"{dist_info}/licenses/LICENSE"].startswith(b"MIT License")
    entry_points = configparser.ConfigParser()
    entry_points.read_string(files[f"{dist_info}/entry_points.txt"].decode())
    assert set(entry_points["console_scripts"]) == set(SCRIPTS)
    assert all((installed.venv / "bin" / script).exists() for script in SCRIPTS)


def test_every_script_says_its_version(installed: Installed) -> None:
    for program in SCRIPTS:
        proc = installed.run(program, "--version")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"{program} {installed.version}"), proc.stdout
        assert proc.stderr == ""


def test_the_installed_engine_and_server_answer_from_outside_the_checkout(
    installed: Installed,
) -> None:
    python = str(installed.venv / "bin" / "python")
    probe = (
        "import sys, bitcask, server, client, protocol, repl\n"
        "with bitcask.open(sys.argv[1], sync='never') as db:\n"
        "    db.put(b'k', b'embedded')\n"
        "    print(db.get(b'k').decode(), bitcask.__version__)\n"
        "print(*(m.__file__ for m in (bitcask, server, client, protocol, repl)), sep='\\n')\n"
    )
    proc = subprocess.run(
        [python, "-c", probe, str(installed.elsewhere / "embedded")],
        capture_output=True, text=True, cwd=installed.elsewhere, env=installed.env(),
        timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first, *files = proc.stdout.splitlines()
    assert first == f"embedded {installed.version}"
    assert all(Path(f).is_relative_to(installed.venv) for f in files), files

    data = installed.elsewhere / "served"
    data.mkdir()
    srv = ServerProcess(data=data, program=[str(installed.venv / "bin" / "bitcask-server")])
    srv.start()
    try:
        port = ["--port", str(srv.port)]
        assert installed.run("bitcask", *port, "put", "k", "served").stdout == "OK\n"
        got = installed.run("bitcask", *port, "get", "k")
        assert (got.returncode, got.stdout, got.stderr) == (0, "served\n", "")
        talked = subprocess.run(
            [python, "-c", ASYNC_CLIENT, str(srv.port)],
            capture_output=True, text=True, cwd=installed.elsewhere, env=installed.env(),
            timeout=TIMEOUT, check=False,
        )  # fmt: skip
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(b"INFO server\r\n")
            info = b""
            while b"\r\n\r\n" not in info[-8:] and len(info) < 65536:
                chunk = sock.recv(65536)
                assert chunk, info
                info += chunk
        url = f"http://127.0.0.1:{srv.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            metrics = page.read().decode()
    finally:
        srv.kill()
    assert (talked.returncode, talked.stdout, talked.stderr) == (
        0, f"served async {installed.version}\n", ""
    )  # fmt: skip
    # the one version everywhere: HELLO (above), INFO, /metrics, the package, --version
    assert f"\r\nbitcask_version:{installed.version}\r\n" in info.decode()
    assert f'bitcask_build_info{{version="{installed.version}"}} 1' in metrics
    assert f"data={data}" in srv.log()  # the installed program served the directory asked


# the async client as docs/client.md shows it, from the installed wheel
ASYNC_CLIENT = """
import asyncio, sys
from client import connect

async def main() -> None:
    async with connect("127.0.0.1", int(sys.argv[1])) as db:
        await db.put(b"c", b"async")
        print((await db.get(b"k")).decode(), (await db.get(b"c")).decode(),
              db.server_info["version"])

asyncio.run(main())
"""


# A user's program as docs/engine.md and docs/client.md write it. assert_type holds each
# result to the type the docs promise, and --disallow-any-expr refuses any Any a public
# signature hands out where the type is known (Commands.set and .ping, Bitcask.pop
# returned Any). Not `x: T = call()`: mypy lets an annotated target take an Any.
USER_PROGRAM = """
import asyncio
from typing import assert_type

import bitcask
from client import Client, connect
from client.errors import ServerError


def engine(path: str) -> None:
    with bitcask.open(path, sync="interval", max_file_size=1 << 20) as db:
        db.put(b"book:1", b"Dune")
        db[b"book:2"] = "Emma"
        got = db.get(b"book:1")
        assert_type(got, bytes | None)
        item = db[b"book:2"]
        assert_type(item, bytes)
        ttl = db.ttl(b"book:1")
        assert_type(ttl, float | None)
        with db.batch() as b:
            b.put(b"book:3", b"Ulysses")
            b.delete(b"book:2")
        many = db.get_many([b"book:2", b"book:3"])
        assert_type(many, list[bytes | None])
        sold = db.incr(b"sold")
        assert_type(sold, int)
        stored, before = db.set(b"lock", b"me", nx=True, ttl=30)
        with db.watch(b"book:1") as w:
            committed = db.commit([("put", b"book:1", b"x"), bitcask.Incr(b"edits")], watch=w)
        keys = list(db.keys(b"book:"))
        assert_type(keys, list[bytes])
        popped = db.pop(b"book:3")
        assert_type(popped, bytes)
        maybe = db.pop(b"book:9", None)
        assert_type(maybe, bytes | None)
        dropped = db.merge().records_dropped
        assert_type(dropped, int)
        print(got, item, ttl, b.results, many, sold, stored, before, committed, keys, dropped)
        print(popped, maybe)
    ok = bitcask.check(path).ok
    assert_type(ok, bool)
    print(ok, db.recovery)


async def remote(port: int) -> None:
    async with connect("127.0.0.1", port) as db:
        await db.put(b"greeting", b"hello", ttl=60)
        got = await db.get(b"greeting")
        assert_type(got, bytes | None)
        existed = await db.delete(b"x")
        assert_type(existed, bool)
        many = await db.mget([b"a", "b"])
        assert_type(many, list[bytes | None])
        await db.mput({b"a": b"1", b"b": b"2"})
        page = await db.scan_page(b"", count=10)
        assert_type(page, tuple[bytes | None, list[bytes]])
        pong = await db.ping()
        assert_type(pong, str)
        echo = await db.ping(b"hi")
        assert_type(echo, bytes)
        stored = await db.set(b"k", b"v", nx=True)
        assert_type(stored, bool)
        before = await db.set(b"k", b"w", get=True)
        assert_type(before, bytes | None)
        n = await db.incr(b"n")
        assert_type(n, int)
        f = await db.incr_float(b"f", 1.5)
        assert_type(f, float)
        keys = [key async for key in db.scan(b"a")]
        print(got, existed, many, page, pong, echo, stored, before, n, f, keys, db.limits)
    second = await connect(f"bitcask://127.0.0.1:{port}")
    assert_type(second, Client)
    try:
        await second.get(b"k")
    except ServerError as exc:
        code = exc.code
        assert_type(code, int)
        print(code)
    finally:
        await second.close()


engine("store")
asyncio.run(remote(7379))
"""


def test_a_typed_user_program_sees_the_installed_types(installed: Installed) -> None:
    program = installed.elsewhere / "user_app.py"
    program.write_text(USER_PROGRAM)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--disallow-any-expr", "--no-incremental",
         "--python-executable", str(installed.venv / "bin" / "python"), program.name],
        capture_output=True, text=True, cwd=installed.elsewhere, env=installed.env(),
        timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
