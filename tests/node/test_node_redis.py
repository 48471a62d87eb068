"""node-redis 4 (npm `redis`) and 6 (its current major, locked as `redis6`) against a
real bitcask-server and, side by side, a real redis-server (tests/node/
node_redis_tour.mjs, node_redis6_tour.mjs).

The tour must print the same lines on both servers (Redis runs with `--databases 1`,
the one database bitcask has). What bitcask refuses (SUBSCRIBE, PUBLISH, EVAL)
must reach the caller as an ErrorReply with the connection still serving; a server
restart must be ridden out by node-redis's reconnect. Needs node and npm (Debian
packages nodejs, npm) and redis-server: skipped without them, failures under CI=true.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.node._npm import RUN_TIMEOUT, run_script, script_path
from tests.protocol._redis_server import RedisConnection, redis_server
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.usefixtures("node_tools")

TOUR = [
    "name: node-tour",  # CLIENT SETNAME on connect (and CLIENT SETINFO, whose error it ignores)
    "set EX: OK",
    "set PX NX: OK",
    "set NX again: null",
    "get: v",
    "ttl: 100",
    "mSet: OK",
    'mGet: ["1","2",null]',
    "auto-pipelined: 100 OK",
    # node-redis 4 reads SCAN's cursor as a JavaScript Number: a 62-bit cursor came
    # back rounded, unknown to the server, and the iteration stopped at 0 keys
    "scanIterator: 100 keys",
    "scanIterator TYPE string: 11 keys",
    'multi: [1,2,"2"]',
    "multi with a failing command: MultiErrorReply: 1 commands failed, see .replies and"
    " .errorIndexes for more information",
    "its write applied: 1",
    "watch: WatchError: One (or more) of the watched keys has been changed",
    "watched key: theirs",
    "sendCommand: raw",
    "unknown command: ErrorReply: ERR unknown command 'NOSUCH', with args beginning with: 'x' ",
    "incr of a string: true ERR value is not an integer or out of range",
    "database 1: ErrorReply: ERR DB index is out of range",
    "del: 107",
    "quit: OK",
]

REFUSED = [
    "subscribe: ErrorReply: ERR unknown command 'subscribe', with args beginning with: 'ch' ",
    "ping after: PONG",
    "publish: ErrorReply: ERR unknown command 'PUBLISH', with args beginning with: 'ch' 'm' ",
    "eval: ErrorReply: ERR unknown command 'EVAL', with args beginning with: 'return 1' '0' ",
    "copy: answered true",  # served since COPY exists: the connection goes on all the same
    "get after: kept",
    "subscriber: ErrorReply: ERR unknown command 'subscribe', with args beginning with: 'ch' ",
    'subscriber get: answered "kept"',
    "quit: OK",
]


def test_tour_prints_what_it_prints_against_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    srv = server_factory(sync="never")  # (--sync always: the restart test below)
    with redis_server(tmp_path, "--databases", "1") as redis_port, ThreadPoolExecutor(2) as pool:
        ours, redis = pool.map(
            lambda port: run_script("node_redis_tour.mjs", str(port), srv.host, "tour"),
            [srv.port, redis_port],
        )
    assert (redis.returncode, redis.stderr) == (0, ""), redis.stderr
    assert redis.stdout.splitlines() == TOUR
    assert (ours.returncode, ours.stderr) == (0, ""), ours.stderr
    assert ours.stdout.splitlines() == TOUR
    # nothing of the tour is left: its keys were all deleted
    assert _call(srv, b"KEYS", b"nr:*") == b"*0\r\n"


AUTH = [
    'connect with s3cret: answered "authed"',
    "quit: OK",
    "connect with wrong: ErrorReply: WRONGPASS invalid username-password pair or user is disabled.",
    # no password: CLIENT SETNAME, sent on connect, is refused
    "connect with undefined: ErrorReply: NOAUTH Authentication required.",
]


def test_passwords_are_checked_as_by_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    srv = server_factory(sync="never", extra=["--auth", "s3cret"])
    with (
        redis_server(tmp_path, "--requirepass", "s3cret") as redis_port,
        ThreadPoolExecutor(2) as pool,
    ):
        ours, redis = pool.map(
            lambda port: run_script("node_redis_tour.mjs", str(port), srv.host, "auth"),
            [srv.port, redis_port],
        )
    assert (redis.returncode, redis.stdout.splitlines()) == (0, AUTH), redis.stderr
    assert (ours.returncode, ours.stdout.splitlines()) == (0, AUTH), ours.stderr


def _tour6(resp: int) -> list[str]:
    return [
        f"resp: {resp}",
        f"name: six-{resp}",  # HELLO 3 SETNAME in RESP3; CLIENT SETNAME in RESP2
        "set EX: OK",
        "set NX: null",
        "get: v",
        "get none: null",
        "ttl: 100",
        "mSet: OK",
        'mGet: ["1",null]',
        "auto-pipelined: 50 OK",
        "scanIterator: 50 keys",
        'multi: [1,"1"]',
        'configGet: {"databases":"1"}',
        "incrByFloat: 1.5",
        "exists: 1",
        "type: string",
        "sendCommand: raw",
        "unknown command: SimpleError: ERR unknown command 'NOSUCH', with args beginning"
        " with: 'x' ",
        "incr of a string: SimpleError: ERR value is not an integer or out of range",
        "watch: WatchError: One (or more) of the watched keys has been changed",
        "watched key: theirs",
        "del: 56",
        "quit: OK",
    ]


def test_node_redis_6_in_resp2_and_resp3_prints_what_it_prints_against_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # `npm install redis` gives this major today: RESP3 through HELLO 3 on connect
    srv = server_factory(sync="never")
    with redis_server(tmp_path, "--databases", "1") as redis_port, ThreadPoolExecutor(2) as pool:
        ours, redis = pool.map(
            lambda port: run_script("node_redis6_tour.mjs", str(port), srv.host),
            [srv.port, redis_port],
        )
    expected = _tour6(2) + _tour6(3)
    assert (redis.returncode, redis.stdout.splitlines()) == (0, expected), redis.stderr
    assert (ours.returncode, ours.stdout.splitlines()) == (0, expected), ours.stderr


def test_refused_commands_are_error_replies_and_the_connection_goes_on(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never")
    done = run_script("node_redis_tour.mjs", str(srv.port), srv.host, "refused")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.splitlines() == REFUSED
    assert _call(srv, b"DBSIZE") == b":0\r\n"  # the tour deleted all it wrote (COPY's too)


def test_a_client_rides_out_a_server_restart(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="always")
    proc = subprocess.Popen(
        ["node", str(script_path("node_redis_tour.mjs")), str(srv.port), srv.host, "restart"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(RUN_TIMEOUT, proc.kill)  # bounds the readline below
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stdin is not None
        first = [proc.stdout.readline(), proc.stdout.readline()]
        assert first == ["before: OK\n", "restart-now\n"], proc.stderr and proc.stderr.read()
        srv.restart()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    assert (proc.returncode, err) == (0, ""), err
    assert out.splitlines() == [
        "after: OK",
        "name after: survivor",  # CLIENT SETNAME sent again on the new connection
        'both: ["1","2"]',  # the write acknowledged before the restart is there
        "quit: OK",
    ]


def _call(srv: ServerProcess, *argv: bytes) -> bytes:
    conn = RedisConnection(srv.port)
    try:
        return conn.call(list(argv))
    finally:
        conn.close()
