"""Every program in examples/ runs and prints what its header promises.

Each example is executed as a reader would run it (a child process, host and
port from arguments or BITCASK_* variables) against a real server from the
`server` fixture, with a bounded timeout. The shell script gets tests/bin (a
Python `nc`) on its PATH when the machine has no netcat, as tests/test_docs.py
does. The Python snippets of README.md are run too, so the README cannot drift
from the library.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, free_port
from tests.test_docs import missing_peers, skip_without

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT = 60.0

# Every file in examples/ and the tests below that run it.
COVERED = {"quickstart.py", "visit_counter.py", "netcat.sh", "embedded.py"}


def example_env(srv: ServerProcess | None = None, **extra: str) -> dict[str, str]:
    """The environment of a reader's shell: BITCASK_* pointing at `srv`, nc on PATH."""
    path = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    if shutil.which("nc") is None:
        path.insert(1, str(ROOT / "tests" / "bin"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITCASK_")}
    env.update(PATH=os.pathsep.join(path), PYTHONPATH=str(ROOT), NO_COLOR="1")
    if srv is not None:
        env.update(BITCASK_HOST=srv.host, BITCASK_PORT=str(srv.port))
    env.update(extra)
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def http_get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_every_example_has_a_test() -> None:
    present = {p.name for p in EXAMPLES.iterdir() if p.is_file()}
    assert present == COVERED, "add a test for each new example and list it in COVERED"


# ---- quickstart.py ----

QUICKSTART_OUTPUT = "b'hello from asyncio'\nTrue\nNone\n"


def test_quickstart_with_flags(server: ServerProcess) -> None:
    argv = [sys.executable, "examples/quickstart.py", "--host", server.host]
    result = run([*argv, "--port", str(server.port)], example_env())
    assert (result.returncode, result.stdout, result.stderr) == (0, QUICKSTART_OUTPUT, "")


def test_quickstart_with_environment(server: ServerProcess) -> None:
    result = run([sys.executable, "examples/quickstart.py"], example_env(server))
    assert (result.returncode, result.stdout) == (0, QUICKSTART_OUTPUT)


def test_quickstart_without_a_server_says_so() -> None:
    port = free_port()
    result = run([sys.executable, "examples/quickstart.py", "--port", str(port)], example_env())
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"quickstart: cannot connect to 127.0.0.1:{port}")
    assert len(result.stderr.splitlines()) == 1


# ---- visit_counter.py ----

VISIT_DEMO_OUTPUT = """\
visit #1 to /
visit #2 to /
visit #1 to /about
     2  /
     1  /about
    20  /busy
"""


def test_visit_counter_demo_counts_every_visit_in_bitcask(server: ServerProcess) -> None:
    for _ in range(2):  # the demo starts from zero each time
        result = run([sys.executable, "examples/visit_counter.py"], example_env(server))
        assert (result.returncode, result.stdout, result.stderr) == (0, VISIT_DEMO_OUTPUT, "")
    # the counters live in the store, not in the app: read one over HTTP
    status, body = http_get(f"http://{server.host}:{server.http_port}/kv/visits:%2Fbusy")
    assert (status, body) == (200, "20")


def wait_for_listener(port: int, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_counts", timeout=2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the app did not listen on {port} within {timeout}s")


def test_visit_counter_serves_then_exits_and_survives_a_database_outage(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory()
    web_port = free_port()
    argv = [
        sys.executable,
        "examples/visit_counter.py",
        "--serve",
        "8",
        "--web-port",
        str(web_port),
    ]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=example_env(srv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_listener(web_port, proc)
        assert http_get(f"http://127.0.0.1:{web_port}/hello%20world") == (
            200,
            "visit #1 to /hello world\n",
        )
        srv.stop()
        status, body = http_get(f"http://127.0.0.1:{web_port}/hello%20world")
        assert status == 503 and body.startswith("database unavailable: "), body
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == f"visit counter on http://127.0.0.1:{web_port}/ for 8 s\n"


# ---- netcat.sh ----

NETCAT_OUTPUT = r"""== ping
PONG
== set and get a value with spaces, a quote and a tab
OK
say "hi"	and wave
the same GET, raw (a $length line, then the bytes):
$17
say "hi"	and wave
== a key that expires
OK
seconds left: \(integer\) (59|60)
== several commands, one connection \(pipelined\)
OK
one
\(nil\)
three
\(integer\) 2
\(integer\) 1
\(integer\) 11
== every key under netcat:, page by page \(SCAN: a cursor, then a page\)
netcat:1
netcat:2
netcat:3
netcat:hits
netcat:motto
netcat:session
== errors are replies too
\(error\) ERR wrong number of arguments for 'get' command
\(error\) ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x'\x20
== clean up
netcat:motto \(integer\) 1
netcat:session \(integer\) 1
netcat:1 \(integer\) 1
netcat:2 \(integer\) 1
netcat:3 \(integer\) 1
netcat:hits \(integer\) 1
"""


def need_peers() -> None:
    """netcat.sh is a bash script calling sed and grep: skip, naming the packages, on
    a machine without them (nc has its stand-in)."""
    lines = (EXAMPLES / "netcat.sh").read_text(encoding="utf-8").splitlines()
    script = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    skip_without(missing_peers([script], example_env()["PATH"]), "examples/netcat.sh")


def netcat_pattern() -> re.Pattern[str]:
    # Lines before the TTL line are literal text; escape them, keep the rest as written.
    head, tail = NETCAT_OUTPUT.split("seconds left", 1)
    return re.compile(re.escape(head) + "seconds left" + tail)


@pytest.mark.parametrize("how", ["arguments", "environment"])
def test_netcat_script(server: ServerProcess, how: str) -> None:
    need_peers()
    if how == "arguments":
        argv = ["bash", "examples/netcat.sh", server.host, str(server.port)]
        env = example_env()
    else:
        argv, env = ["bash", "examples/netcat.sh"], example_env(server)
    result = run(argv, env)
    assert result.returncode == 0, result.stderr
    assert netcat_pattern().fullmatch(result.stdout), result.stdout
    # it cleans up after itself
    status, _ = http_get(f"http://{server.host}:{server.http_port}/kv/netcat:1")
    assert status == 404


def test_netcat_script_authenticates_with_bitcask_auth(
    server_factory: Callable[..., ServerProcess],
) -> None:
    need_peers()
    srv = server_factory(extra=["--auth", "s3cret"])
    result = run(["bash", "examples/netcat.sh"], example_env(srv, BITCASK_AUTH="s3cret"))
    assert result.returncode == 0, result.stderr
    assert netcat_pattern().fullmatch(result.stdout), result.stdout
    # without the token every command but AUTH/HELLO/QUIT is refused, as in Redis;
    # the script stops at the first refused write
    result = run(["bash", "examples/netcat.sh"], example_env(srv))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "(error) NOAUTH Authentication required."
    assert result.stderr == "netcat.sh: SET failed, stopping\n"


def test_netcat_script_fails_without_a_server() -> None:
    need_peers()
    result = run(["bash", "examples/netcat.sh", "127.0.0.1", str(free_port())], example_env())
    assert result.returncode != 0


# ---- embedded.py ----

EMBEDDED_OUTPUT = r"""== put, get, delete
get user:1 -> b'Ada'
get user:9 -> None
'user:2' in db -> True | len(db) -> 2
delete user:2 -> True | again -> False
== an atomic batch: all of it or none of it, even after a crash
after the batch -> {b'account:alice': b'90', b'account:bob': b'110'} | user:1 -> None
== read-modify-write, decided atomically by the one writer
incr visits -> 1 11
set lock nx -> (True, None)
set lock nx again -> (False, b'me')
append log -> 1 2
commit after a concurrent write -> None
rename log -> journal: True b'ab'
== time to live
ttl session:42 -> 30.0 | no TTL -> None
31 s later: get -> None | in db -> False
== paging through keys with scan
page 1: 100 keys, b'item:0000' .. b'item:0099'
page 2: 100 keys, b'item:0100' .. b'item:0199'
page 3: 50 keys, b'item:0200' .. b'item:0249'
== overwrite everything, then merge to reclaim the dead bytes
dead bytes (\d+) -> (\d+); disk (\d+) -> (\d+) bytes
merged \d+ files: 254 records copied, \d+ dropped \(2 expired\)
keys after merge -> 254 | item:0007 -> b'new 7'
== backup: a consistent copy that opens as a store
backup keys -> 254 | after-backup -> None
check backup -> OK
== reopen: the keydir is rebuilt from hint files
keys -> 255 | hinted files -> True
torn bytes truncated -> 0
"""


def embedded_pattern() -> re.Pattern[str]:
    literal, numeric = EMBEDDED_OUTPUT.split("dead bytes", 1)
    rest, tail = numeric.split("keys after merge", 1)
    return re.compile(
        re.escape(literal) + "dead bytes" + rest + re.escape("keys after merge" + tail)
    )


def test_embedded_in_a_temporary_directory() -> None:
    result = run([sys.executable, "examples/embedded.py"], example_env())
    assert (result.returncode, result.stderr) == (0, "")
    match = embedded_pattern().fullmatch(result.stdout)
    assert match, result.stdout
    dead_before, dead_after, disk_before, disk_after = map(int, match.groups())
    assert dead_after < dead_before and disk_after < disk_before


def test_embedded_help_prints_usage_and_makes_no_store(tmp_path: Path) -> None:
    # `--help` was taken for the directory to make: a store appeared in ./--help
    result = run(
        [sys.executable, str(EXAMPLES / "embedded.py"), "--help"], example_env(), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python examples/embedded.py [-h] [directory]")
    assert list(tmp_path.iterdir()) == []


def test_embedded_in_a_named_directory_keeps_the_store(tmp_path: Path) -> None:
    target = tmp_path / "mystore"
    result = run([sys.executable, str(EXAMPLES / "embedded.py"), str(target)], example_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"the store is in {target / 'store'}\n")
    assert (target / "store").is_dir() and (target / "backup").is_dir()
    again = run([sys.executable, str(EXAMPLES / "embedded.py"), str(target)], example_env())
    assert again.returncode == 2
    assert "is not empty" in again.stderr


# ---- the Python snippets of README.md ----


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_snippets_run(server: ServerProcess, tmp_path: Path) -> None:
    blocks = readme_python_blocks()
    client_block = next(b for b in blocks if "from client import connect" in b)
    engine_block = next(b for b in blocks if "import bitcask" in b)
    # The client snippet uses top-level `async with`: run it inside a coroutine.
    body = "".join(
        f"    {line}\n" for line in client_block.replace("7379", str(server.port)).splitlines()
    )
    program = f"import asyncio\n\nasync def main():\n{body}\nasyncio.run(main())\n"
    result = run([sys.executable, "-c", program], example_env(), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "b'hello from asyncio'\n"), result.stderr
    result = run([sys.executable, "-c", engine_block], example_env(), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "b'Ada'\n"), result.stderr
    assert (tmp_path / "scratch" / "mystore").is_dir()  # under scratch/, which git ignores
