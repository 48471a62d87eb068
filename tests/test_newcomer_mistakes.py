"""The mistakes a newcomer makes each get one line: what happened, what to do.

A port already in use, a data directory that is a file or another server's, the
same port twice, a typo'd flag, a URL where a flag belongs or to the HTTP port, a
server that is down, a Python that is too old: every one exits non-zero with one
line on stderr that says what to do, no usage dump, no traceback, no secret.
Real processes throughout (the commands a reader types, against real servers).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0


def run(module: str, *args: str, stdin: str = "") -> tuple[int, str]:
    """Run `python -m module args`; (exit status, stderr) once it has checked stdout is quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITCASK_")}
    env.update(NO_COLOR="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=ROOT,
    )
    return proc.returncode, proc.stderr


def one_line(err: str) -> str:
    """The single line of `err`, without the log prefix (`... ERROR bitcask.server: `)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and not err.startswith("usage:"), err
    return lines[0].split(" bitcask.server: ", 1)[-1]


def start_server(tmp_path: Path, *args: str) -> tuple[int, str]:
    return run("server", "--data", str(tmp_path / "data"), *args)


def ports(port: int | None = None, http_port: int | None = None) -> list[str]:
    return ["--port", str(port or free_port()), "--http-port", str(http_port or free_port())]


@pytest.mark.parametrize("which", ["--port", "--http-port"])
def test_a_port_in_use_names_the_address_the_flag_and_the_way_out(
    tmp_path: Path, which: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        argv = ports(taken) if which == "--port" else ports(http_port=taken)
        code, err = start_server(tmp_path, *argv)
    assert code == 4
    # it was: cannot listen on 127.0.0.1: [Errno 98] error while attempting to bind on
    # address ('127.0.0.1', 7379): address already in use
    assert one_line(err) == (
        f"cannot listen on 127.0.0.1:{taken} ({which}): the address is in use; another "
        f"program listens there (another bitcask-server? `make run` is one): stop it, "
        f"or pass another {which}"
    )
    # the store it opened first was closed again: the next try can open it
    assert _unlocked(tmp_path / "data")


def _unlocked(data: Path) -> bool:
    import bitcask

    with bitcask.open(data):
        return True


def test_a_second_server_on_the_same_data_dir_says_whose_it_is_and_what_to_do(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never")
    code, err = run("server", "--data", str(srv.data), *ports())
    assert code == 3
    line = one_line(err)
    assert line.startswith(f"cannot open the store at {srv.data}: store ")
    assert f"is locked by process {srv.proc.pid}" in line, line
    assert line.endswith("stop it, or pass another --data"), line
    assert srv.proc.poll() is None  # the first one is untouched


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a store")
    code, err = start_server(tmp_path, *ports())
    assert code == 3
    assert one_line(err).startswith(f"cannot open the store at {tmp_path / 'data'}: not a dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory modes")
def test_an_unwritable_data_dir(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code, err = run("server", "--data", str(locked / "db"), *ports())
    finally:
        locked.chmod(stat.S_IRWXU)
    assert code == 3
    assert one_line(err) == f"cannot create the store directory {locked / 'db'}: Permission denied"


def test_the_same_port_twice(tmp_path: Path) -> None:
    port = str(free_port())
    code, err = start_server(tmp_path, "--port", port, "--http-port", port)
    # it was: port and http-port must differ
    assert (code, one_line(err)) == (
        2,
        f"bitcask-server: --port and --http-port are both {port}: the binary and HTTP ports "
        "must differ, pass another --http-port",
    )


@pytest.mark.parametrize(
    ("module", "prog"),
    [("server", "bitcask-server"), ("repl.cli", "bitcask"), ("repl.shell", "bitcask-shell")],
)
def test_a_typo_in_a_flag_is_one_line_not_the_usage(module: str, prog: str) -> None:
    code, err = run(module, "--prot", "7379")
    assert code == 2
    # bitcask and bitcask-shell printed argparse's 4-line usage first
    assert one_line(err).startswith(f"{prog}: unrecognized arguments: --prot")
    assert err.rstrip().endswith(
        "--help lists the flags)"
        if prog == "bitcask-server"
        else (f"({prog} --help lists the options)")
    )


def test_a_url_where_a_flag_belongs_is_pointed_at_url_and_never_echoed() -> None:
    url = "redis://:s3cret@127.0.0.1:1"
    code, err = run("repl.shell", url)
    assert code == 2 and "s3cret" not in err
    assert one_line(err) == (
        "bitcask-shell: unrecognized arguments: redis://:***@127.0.0.1:1 (a URL goes after "
        "--url; bitcask-shell --help lists the options)"
    )
    code, err = run("repl.cli", url, "get", "k")
    assert code == 2 and "s3cret" not in err
    # it was: (error) unknown command 'redis://:s3cret@127.0.0.1:1' (bitcask help lists them)
    assert (
        one_line(err)
        == "(error) 'redis://:***@127.0.0.1:1' is a URL: give it with --url, before the command"
    )


def test_a_server_that_is_down() -> None:
    port = free_port()
    code, err = run("repl.cli", "--port", str(port), "get", "k")
    assert (code, one_line(err)) == (
        2,
        f"(error) cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)",
    )


@pytest.mark.parametrize("module", ["repl.cli", "repl.shell"])
def test_a_redis_url_to_the_http_port_says_so(server: ServerProcess, module: str) -> None:
    url = f"redis://127.0.0.1:{server.http_port}"
    args = ("--url", url, "get", "k") if module == "repl.cli" else ("--url", url)
    code, err = run(module, *args, stdin="get k\n")
    assert code == 2
    # it was: connection to 127.0.0.1:7380 lost during the call (it may or may not have
    # been applied); the next command reconnects
    line = one_line(err)
    assert line.startswith(
        f"(error) 127.0.0.1:{server.http_port} does not speak the Redis protocol"
    )
    assert line.endswith(
        "is it an HTTP port? bitcask-server speaks Redis on its --port (default 7379), not on "
        "--http-port"
    )
    # and the same endpoint's Redis port answers
    code, err = run(module, "--url", f"redis://127.0.0.1:{server.port}", *args[2:], stdin="get k\n")
    assert (code, err) == ((1, "") if module == "repl.cli" else (0, ""))


def test_a_python_older_than_3_11_is_named_with_the_way_out(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make not installed (Debian package make)")
    fake = tmp_path / "python3.10"
    fake.write_text(
        "#!/bin/sh\n"  # a Python 3.10 as far as the Makefile's check can tell
        f"exec {sys.executable} -c 'import sys; sys.version_info = (3, 10, 12); "
        'sys.version = "3.10.12 (fake)"; exec(sys.argv[1])\' "$2"\n'
    )
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "-s", "run", f"PYTHON={fake}", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode != 0 and not venv.exists()
    assert proc.stderr.splitlines()[0] == (
        f"bitcask needs Python 3.11+, {fake} is 3.10.12: name a newer one, e.g. "
        "make run PYTHON=python3.12"
    )


def test_an_option_after_the_command_is_pointed_before_it() -> None:
    code, err = run("repl.cli", "get", "--port", str(free_port()), "k")
    assert code == 2
    # it was only: too many arguments for 'get' (usage: get KEY)
    assert one_line(err) == (
        "(error) too many arguments for 'get' (usage: get KEY); --port is an option of "
        "bitcask: it goes before the command (bitcask --port ... get ...)"
    )


def test_a_value_that_looks_like_an_option_is_still_a_value(server: ServerProcess) -> None:
    code, err = run("repl.cli", "--port", str(server.port), "put", "k", "--port")
    assert (code, err) == (0, "")
    code, err = run("repl.cli", "--port", str(server.port), "put", "k", "--port", "x")
    assert code == 2 and one_line(err).startswith("(error) too many arguments for 'put'")


@pytest.mark.parametrize(
    ("variable", "flag", "kind"),
    [
        ("BITCASK_PORT", "--port", "a whole number"),
        ("BITCASK_IDLE_TIMEOUT", "--idle-timeout", "a number"),
    ],
)
def test_a_bad_variable_says_what_it_must_be(
    tmp_path: Path, variable: str, flag: str, kind: str
) -> None:
    env = {**os.environ, variable: "seven", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--data", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    # it was: BITCASK_PORT='seven': invalid literal for int() with base 10: 'seven'
    assert (proc.returncode, one_line(proc.stderr)) == (
        2,
        f"bitcask-server: {variable}='seven': must be {kind} (as {flag})",
    )
