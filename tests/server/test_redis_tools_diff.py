"""redis-cli's and redis-benchmark's other modes, run against bitcask-server AND a real
redis-server side by side (docs/redis.md, "Operators' tools").

Both servers are started once for the module, alike: a password (`--auth` /
`--requirepass`), at most 100 connections (`--max-connections` / `--maxclients`), and
Redis with `--databases 1`, the one database this server has. Each tool run gets the
same arguments and input on both, at once (two processes), under a timeout; the test
compares what the tool printed and its exit code. Where this server does not do what
Redis does (SYNC, EVAL, MONITOR, ...), the tool must print a Redis error and exit as it
does against a Redis without the feature: never hang. The binaries come from the Debian
packages redis-tools and redis-server (a skip names them; under CI=true a failure).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bitcask
from protocol._resp_writer import encode
from server._metrics import Metrics
from server._outcome import Read
from server._redis import RedisDispatcher
from server._writer import Writer
from server.config import ServerConfig
from tests.protocol._redis_server import redis_server, require_binary
from tests.serverproc import ServerProcess

TOKEN = "t0ken"
MAX_VALUE = 1 << 20  # --max-value-size here; redis-benchmark -d up to it
TIMEOUT = 60.0
AUTH = ("--no-auth-warning", "-a", TOKEN)


@dataclass
class Run:
    rc: int
    out: str
    err: str


@dataclass
class Pair:
    ours: ServerProcess
    redis: int  # its port

    @property
    def ports(self) -> tuple[int, int]:
        return self.redis, self.ours.port


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    require_binary("redis-cli", "redis-tools")
    require_binary("redis-benchmark", "redis-tools")
    base = tmp_path_factory.mktemp("tools")
    (base / "data").mkdir()
    ours = ServerProcess(
        data=base / "data",
        sync="never",
        extra=["--auth", TOKEN, "--max-connections", "100", "--max-value-size", str(MAX_VALUE)],
    )
    ours.start()
    try:
        with redis_server(
            base, "--requirepass", TOKEN, "--maxclients", "100", "--databases", "1"
        ) as port:
            yield Pair(ours, port)
    finally:
        ours.kill()


def _run(argv: list[str], stdin: bytes | None, timeout: float) -> Run:
    done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    return Run(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode())


def both(
    pair: Pair,
    *args: str,
    tool: str = "redis-cli",
    stdin: bytes | None = None,
    auth: tuple[str, ...] = AUTH,
    timeout: float = TIMEOUT,
) -> tuple[Run, Run]:
    """Run `tool` with `args` against Redis and against bitcask-server at once: (redis, ours).
    `{port}` in an argument is each server's port; the port in the output reads PORT."""
    binary = require_binary(tool, "redis-tools")

    def one(port: int) -> Run:
        argv = [binary, "-h", "127.0.0.1", "-p", str(port), *auth]
        argv += [a.replace("{port}", str(port)) for a in args]
        run = _run(argv, stdin, timeout)
        run.out, run.err = (t.replace(str(port), "PORT") for t in (run.out, run.err))
        return run

    with ThreadPoolExecutor(2) as pool:
        redis, ours = pool.map(one, pair.ports)
    return redis, ours


def same(pair: Pair, *args: str, **kw: Any) -> Run:
    """Run on both and require the same output and exit code; returns ours."""
    redis, ours = both(pair, *args, **kw)
    assert (ours.rc, ours.out, ours.err) == (redis.rc, redis.out, redis.err), args
    return ours


def lines_until(pair: Pair, n: int, *args: str) -> tuple[list[str], list[str]]:
    """The first `n` lines a never-ending mode (--stat, --latency-history) prints on
    each server; the tool is then stopped (bounded by TIMEOUT)."""
    cli = require_binary("redis-cli", "redis-tools")
    stdbuf = require_binary("stdbuf", "coreutils")  # line-buffered when not a terminal

    def one(port: int) -> list[str]:
        argv = [stdbuf, "-oL", cli, "-h", "127.0.0.1", "-p", str(port), *AUTH, *args]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            out: list[str] = []
            for _ in range(n):
                line = proc.stdout.readline()
                assert line, f"{args} ended early: {out}"
                out.append(line.decode())
            return out
        finally:
            proc.kill()
            proc.wait(TIMEOUT)

    with ThreadPoolExecutor(2) as pool:
        redis, ours = pool.map(one, pair.ports)
    return redis, ours


@pytest.fixture
def seeded(pair: Pair) -> Pair:
    """The same keys in both, and only them (whatever ran before): integers, short and
    long strings, a 200 KiB value."""
    same(pair, "FLUSHALL")
    same(pair, "MSET", "n:1", "12345", "n:2", "-7", "s:short", "abc", "s:44", "y" * 44)
    same(pair, "MSET", "s:45", "z" * 45, "s:zero", "007", "s:empty", "")
    same(pair, "-x", "SET", "s:big", stdin=b"x" * 200_000)
    return pair


# -- 1. redis-cli's modes ------------------------------------------------------------------


def _summary(out: str) -> str:
    """--bigkeys' summary (the lines before it follow SCAN's order, which differs)."""
    return out.split("-------- summary -------", 1)[1]


def test_bigkeys_summary_is_redis_s(seeded: Pair) -> None:
    redis, ours = both(seeded, "--bigkeys")
    assert (ours.rc, ours.err) == (redis.rc, redis.err) == (0, "")
    assert _summary(ours.out) == _summary(redis.out)
    assert "Biggest string found '\"s:big\"' has 200000 bytes" in ours.out


def test_memkeys_ranks_by_memory_usage_without_warnings(seeded: Pair) -> None:
    # MEMORY USAGE was an unknown command: a warning per key and "0 bytes" everywhere
    redis, ours = both(seeded, "--memkeys")
    assert (ours.rc, ours.err) == (redis.rc, redis.err) == (0, "")
    assert "Warning" not in ours.out and "MEMORY USAGE" not in ours.out
    biggest = re.compile(r"Biggest string found '\"(.*)\"' has (\d+) bytes")
    found, theirs = biggest.search(ours.out), biggest.search(redis.out)
    assert found and theirs and found[1] == theirs[1] == "s:big"
    assert int(found[2]) == len("s:big") + 200_000  # the key's and its value's bytes
    assert "8 strings with" in ours.out


def test_hotkeys_fails_as_without_an_lfu_policy(seeded: Pair) -> None:
    # OBJECT FREQ: Redis's own error, so redis-cli explains and exits 1 as there
    ours = same(seeded, "--hotkeys")
    assert ours.rc == 1 and "An LFU maxmemory policy is not selected" in ours.err


def test_stat_reads_the_info_fields(seeded: Pair) -> None:
    redis, ours = lines_until(seeded, 3, "--stat", "-i", "0.05")
    assert ours[:2] == redis[:2]  # the header: data, load, child
    assert ours[2].split()[0] == redis[2].split()[0] == "8"  # keys, from INFO keyspace


LATENCY = re.compile(r"^\d+ \d+ \d+\.\d\d \d+$")


def test_latency_modes(seeded: Pair) -> None:
    # --latency exits after its interval (-i; 1 s by default) when not at a terminal
    redis, ours = both(seeded, "--latency", "-i", "0.1")
    assert ours.rc == redis.rc == 0 and LATENCY.match(ours.out.strip()), ours.out
    redis_lines, our_lines = lines_until(seeded, 2, "--latency-history", "-i", "0.05")
    assert all(LATENCY.match(line.strip()) for line in redis_lines + our_lines)
    redis_lines, our_lines = lines_until(seeded, 4, "--latency-dist", "-i", "0.05")
    assert our_lines == redis_lines  # the legend


def test_repeat_csv_raw_and_exit_codes(seeded: Pair) -> None:
    assert same(seeded, "-r", "3", "-i", "0.01", "INCR", "counter").out == "1\n2\n3\n"
    same(seeded, "DEL", "counter")
    assert same(seeded, "--csv", "MGET", "n:1", "s:short", "nokey").out == '"12345","abc",NULL\n'
    assert same(seeded, "--no-raw", "MGET", "n:1", "nokey").out == '1) "12345"\n2) (nil)\n'
    same(seeded, "SET", "lines", "a\nb")
    assert same(seeded, "--raw", "GET", "lines").out == "a\nb\n"
    assert same(seeded, "--no-raw", "GET", "lines").out == '"a\\nb"\n'
    # -e: an error reply makes the exit code 1; without it 0
    assert same(seeded, "-e", "INCR", "s:short").rc == 1
    assert same(seeded, "INCR", "s:short").rc == 0
    assert same(seeded, "-e", "NOSUCHCMD").rc == 1


def test_resp3_output(seeded: Pair) -> None:
    ours = same(seeded, "-3", "--no-raw", "MGET", "n:1", "nokey")
    assert ours.out == '1) "12345"\n2) (nil)\n'
    same(seeded, "-3", "--no-raw", "CONFIG", "GET", "save")
    redis, ours = both(seeded, "-3", "--no-raw", "HELLO")
    normal = re.compile(r'"version" => "[^"]*"|"id" => \(integer\) \d+')
    assert normal.sub("", ours.out) == normal.sub("", redis.out)


INTERACTIVE = [
    "MGET n:1 nokey", "CONFIG GET save", "OBJECT ENCODING s:44", "MEMORY USAGE nokey",
    "OBJECT FREQ n:1", "READONLY", "SELECT 1", "TYPE n:1", "SCAN 0 TYPE hash", "INCR s:short",
    "MULTI", "EXISTS n:1", "EXEC",
]  # fmt: skip


def _interactive_screen(port: int, socket: Path) -> str:
    """redis-cli -3 at a terminal (tmux), the INTERACTIVE lines typed ahead at once."""
    tmux = require_binary("tmux", "tmux")
    cli = require_binary("redis-cli", "redis-tools")

    def tm(*args: str) -> str:
        done = subprocess.run(
            [tmux, "-S", str(socket), *args], capture_output=True, text=True, timeout=TIMEOUT
        )
        return done.stdout

    def prompts() -> tuple[int, str]:
        # redis-cli (linenoise) flushes what was typed ahead of its prompt: wait for it
        deadline = time.monotonic() + 15
        while True:
            screen = tm("capture-pane", "-p")
            drawn = [ln for ln in screen.splitlines() if ln.startswith("127.0.0.1:")]
            if (drawn and drawn[-1].rstrip().endswith(">")) or time.monotonic() > deadline:
                return len(drawn), screen
            time.sleep(0.02)

    tm("new-session", "-d", "-x", "120", "-y", "60", f"{cli} -p {port} {' '.join(AUTH)} -3")
    try:
        for line in INTERACTIVE:
            prompts()
            tm("send-keys", "-l", line + "\r")
            deadline = time.monotonic() + 15
            while prompts()[0] <= INTERACTIVE.index(line) + 1 and time.monotonic() < deadline:
                time.sleep(0.02)
        return prompts()[1].replace(str(port), "PORT")
    finally:
        subprocess.run(
            [tmux, "-S", str(socket), "kill-server"], capture_output=True, timeout=TIMEOUT
        )


def test_resp3_at_a_terminal(seeded: Pair, tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        redis, ours = pool.map(
            _interactive_screen, seeded.ports, [tmp_path / "r.sock", tmp_path / "o.sock"]
        )
    assert ours == redis
    assert '1# "save" => ""' in ours and "(TX)>" in ours


def test_x_reads_the_last_argument_from_stdin(seeded: Pair) -> None:
    value = bytes(range(256)) * (MAX_VALUE // 256)  # exactly --max-value-size, binary
    assert same(seeded, "-x", "SET", "x:max", stdin=value).out == "OK\n"
    _, ours = both(seeded, "--raw", "STRLEN", "x:max")
    assert ours.out == f"{MAX_VALUE}\n"
    cli = require_binary("redis-cli", "redis-tools")
    back = subprocess.run(
        [cli, "-p", str(seeded.ours.port), *AUTH, "--raw", "GET", "x:max"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert back.stdout == value + b"\n"
    # one byte over: this server's limit, as a Redis error line; the tool exits 0 as
    # for any error reply (Redis's 512 MiB proto-max-bulk-len is far above it)
    over = _run(
        [cli, "-p", str(seeded.ours.port), *AUTH, "-x", "SET", "x:over"], value + b"!", TIMEOUT
    )
    too_big = "ERR string exceeds maximum allowed size (proto-max-bulk-len)\n\n"
    assert (over.rc, over.out) == (0, too_big)
    same(seeded, "DEL", "x:max")


def test_auth_forms_and_database_numbers(seeded: Pair) -> None:
    for args in (
        ("--user", "default", "--pass", TOKEN, "PING"),
        ("-u", "redis://default:" + TOKEN + "@127.0.0.1:{port}/0", "PING"),
        ("-u", "redis://" + TOKEN + "@127.0.0.1:{port}", "PING"),
        ("--no-auth-warning", "-a", TOKEN, "PING"),
        ("-a", TOKEN, "PING"),  # the warning on stderr, in both
        ("-a", "wrong", "PING"),
        ("--user", "bob", "--pass", TOKEN, "PING"),
        ("PING",),
    ):
        same(seeded, *args, auth=())
    # -n 1 and a URL's /1: SELECT fails (Redis with one database answers the same),
    # redis-cli says so on stderr and goes on in database 0
    ours = same(seeded, "-n", "1", "GET", "n:1")
    assert ours.out == "12345\n" and "SELECT 1 failed: ERR DB index is out of range" in ours.err
    same(seeded, "-u", "redis://default:" + TOKEN + "@127.0.0.1:{port}/1", "GET", "n:1", auth=())
    ours = same(seeded, "SELECT", "1")
    assert ours.out == "ERR DB index is out of range\n\n"


def _multibulk(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def test_pipe_of_a_stream_that_starts_with_auth(pair: Pair) -> None:
    # A mass-insertion file that authenticates itself: Redis reads the MSET (21
    # arguments) after running the AUTH; here it was read under the pre-AUTH limits
    # with it, a protocol error ("unauthenticated multibulk length")
    pairs = [w for i in range(10) for w in (b"pipe:%d" % i, b"v" * 20_000)]
    stream = _multibulk(b"AUTH", TOKEN.encode()) + _multibulk(b"MSET", *pairs)
    ours = same(pair, "--pipe", stdin=stream, auth=())
    assert ours.out.endswith("errors: 0, replies: 2\n")
    assert same(pair, "EXISTS", *[f"pipe:{i}" for i in range(10)]).out == "10\n"


def test_replication_and_scripting_are_refused_at_once(seeded: Pair, tmp_path: Path) -> None:
    # what Redis serves and this server refuses: a Redis error, and the tool ends
    cli = require_binary("redis-cli", "redis-tools")
    base = [cli, "-p", str(seeded.ours.port), *AUTH]
    rdb = _run([*base, "--rdb", str(tmp_path / "dump.rdb")], None, TIMEOUT)
    assert rdb.rc == 1
    assert "SYNC with master failed: -ERR unknown command 'SYNC'" in rdb.err
    fn = _run([*base, "--functions-rdb", str(tmp_path / "f.rdb")], None, TIMEOUT)
    assert fn.rc == 1 and "Failed requesting functions only RDB" in fn.err
    replica = _run([*base, "--replica"], None, TIMEOUT)
    assert replica.rc == 1 and "unknown command 'SYNC'" in replica.err
    monitor = _run([*base, "MONITOR"], None, TIMEOUT)
    assert (monitor.rc, monitor.out) == (
        0,
        "ERR unknown command 'MONITOR', with args beginning with: \n\n",
    )
    script = tmp_path / "s.lua"
    script.write_text("return 1")
    ev = _run([*base, "-e", "--eval", str(script)], None, TIMEOUT)
    assert ev.rc == 1 and "ERR unknown command 'EVAL'" in ev.err
    # --cluster reads INFO's cluster_enabled: the same refusal from both
    ours = same(seeded, "--cluster", "info", "127.0.0.1:{port}")
    assert ours.rc == 1 and "is not configured as a cluster node" in ours.out


# -- 2. redis-benchmark --------------------------------------------------------------------

SUPPORTED = ["ping_inline", "ping_mbulk", "set", "get", "incr", "mset"]
UNSUPPORTED = [
    "lpush", "rpush", "lpop", "rpop", "sadd", "hset", "spop", "zadd", "zpopmin", "lrange_100",
]  # fmt: skip


def _bench(pair: Pair, *args: str) -> Run:
    bench = require_binary("redis-benchmark", "redis-tools")
    argv = [bench, "-h", "127.0.0.1", "-p", str(pair.ours.port), "-a", TOKEN, "-q", *args]
    run = _run(argv, None, TIMEOUT)
    run.out = run.out.replace("\r", "\n")
    return run


def _rps(out: str) -> list[str]:
    return re.findall(r"^([A-Z_]+(?: \(10 keys\))?): [\d.]+ requests per second", out, re.M)


def test_benchmark_supported_tests_pipelined(pair: Pair) -> None:
    run = _bench(pair, "-t", ",".join(SUPPORTED), "-n", "1000", "-P", "16")
    assert run.rc == 0, run.out + run.err
    names = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"]
    assert _rps(run.out) == names


@pytest.mark.parametrize("test", UNSUPPORTED)
def test_benchmark_unsupported_tests_end_with_the_error(pair: Pair, test: str) -> None:
    run = _bench(pair, "-t", test, "-n", "100")
    assert run.rc == 1
    assert re.search(r"Error from server: ERR unknown command '[LRSHZ][A-Z]+'", run.err)


def test_benchmark_csv_keyspace_sizes_and_reconnects(pair: Pair) -> None:
    # (--threads costs a quarter second a test: its stats thread's tick)
    run = _bench(pair, "-t", "set,get", "-n", "500", "-r", "1000", "--csv", "--threads", "2")
    assert run.rc == 0 and run.out.splitlines()[0].startswith('"test","rps"')
    assert [line.split(",")[0] for line in run.out.splitlines()[1:]] == ['"SET"', '"GET"']
    run = _bench(pair, "-t", "set,get", "-n", "8", "-c", "2", "-d", str(MAX_VALUE))
    assert run.rc == 0 and _rps(run.out) == ["SET", "GET"], run.out
    run = _bench(pair, "-t", "set", "-n", "2", "-c", "1", "-d", str(MAX_VALUE + 1))
    assert run.rc == 1
    assert "ERR string exceeds maximum allowed size (proto-max-bulk-len)" in run.err
    run = _bench(pair, "-t", "ping,set", "-n", "300", "-k", "0")
    assert run.rc == 0 and _rps(run.out) == ["PING_INLINE", "PING_MBULK", "SET"], run.out


def test_benchmark_over_max_connections_fails_as_against_redis(pair: Pair) -> None:
    redis, ours = both(
        pair, "-t", "get", "-n", "1000", "-c", "200", "-q", tool="redis-benchmark", auth=AUTH[1:]
    )
    assert ours.rc == redis.rc == 1
    assert "ERR max number of clients reached" in ours.out + ours.err
    assert "ERR max number of clients reached" in redis.out + redis.err


# -- 3. what tools send first ---------------------------------------------------------------


def test_commands_tools_send_at_start(seeded: Pair) -> None:
    for args in (
        ("CONFIG", "GET", "save"),
        ("--no-raw", "CONFIG", "GET", "databases"),
        ("--no-raw", "READONLY"),
        ("--no-raw", "READWRITE"),
        ("--no-raw", "CLUSTER", "SLOTS"),
        ("--no-raw", "CLUSTER", "nope"),
        ("TYPE", "n:1"),
        ("TYPE", "nokey"),
        ("SCAN", "0", "TYPE", "list"),
        ("SCAN", "0", "TYPE", "hash"),
        ("INFO", "cluster"),
        *(("OBJECT", "ENCODING", key) for key in ("n:1", "n:2", "s:short", "s:44", "s:45")),
        *(("OBJECT", "ENCODING", key) for key in ("s:zero", "s:big", "s:empty", "nokey")),
        ("OBJECT", "FREQ", "nokey"),
        ("MEMORY", "USAGE", "nokey"),
        ("--no-raw", "MEMORY", "USAGE", "n:1", "SAMPLES", "-1"),
    ):
        same(seeded, *args)
    redis, ours = both(seeded, "SCAN", "0", "TYPE", "string", "COUNT", "100")
    assert sorted(ours.out.split()[1:]) == sorted(redis.out.split()[1:])
    # HELLO without arguments answers in the connection's protocol (RESP2 here)
    redis, ours = both(seeded, "--no-raw", "HELLO")
    head = [' 1) "server"', ' 2) "redis"', ' 3) "version"']
    assert ours.out.splitlines()[:3] == redis.out.splitlines()[:3] == head
    _, ours = both(seeded, "INFO", "server")
    assert re.search(r"^redis_version:7\.0\.\d+\r?$", ours.out, re.M)
    # documented differences (docs/redis.md section 8): an append-only store, its own
    # command count, CLIENT SETINFO accepted (Redis 7.2), DEBUG not a command here
    _, ours = both(seeded, "CONFIG", "GET", "appendonly")
    assert ours.out == "appendonly\nyes\n"
    _, ours = both(seeded, "COMMAND", "COUNT")
    assert ours.out == "62\n"
    _, ours = both(seeded, "CLIENT", "SETINFO", "LIB-NAME", "redis-py")
    assert ours.out == "OK\n"
    redis, ours = both(seeded, "DEBUG", "SLEEP", "0")
    assert "DEBUG command not allowed" in redis.out
    assert ours.out.startswith("ERR unknown command 'DEBUG'")


# -- STRLEN, OBJECT ENCODING and MEMORY USAGE read no value -------------------------------


class _Counting:
    """The store, counting the values read (get, get_many)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.reads = 0

    def get(self, key: bytes) -> Any:
        self.reads += 1
        return self._db.get(key)

    def get_many(self, keys: Any) -> Any:
        self.reads += 1
        return self._db.get_many(keys)

    def __contains__(self, key: bytes) -> bool:
        return key in self._db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


async def test_size_commands_answer_from_the_keydir(tmp_path: Path) -> None:
    # STRLEN read the whole value on the event loop: ~50 ms and a 32 MiB copy per
    # STRLEN of a 32 MiB value, so `redis-cli --bigkeys` read the whole store
    db = bitcask.open(tmp_path / "db", sync="never", max_value_size=4 << 20)
    try:
        big = b"v" * (3 << 20)
        db.put(b"big", big)
        db.put(b"n", b"42")
        counting = _Counting(db)
        d = RedisDispatcher(
            counting,
            Writer(db, mode="loop", metrics=Metrics()),
            ServerConfig(data=tmp_path / "db", port=0, http_port=0),
            max_key_size=db.options.max_key_size,
            max_value_size=db.options.max_value_size,
            info=dict,
        )
        s = d.new_session()

        def call(*argv: bytes) -> bytes:
            outcome = d.call(s, argv[0].decode().lower(), list(argv))
            assert type(outcome) is Read
            reply: bytes = outcome.fn(outcome.arg)
            return reply

        assert call(b"STRLEN", b"big") == encode(len(big))
        assert call(b"MEMORY", b"USAGE", b"big") == encode(3 + len(big))
        assert call(b"OBJECT", b"ENCODING", b"big") == encode(b"raw")
        assert call(b"OBJECT", b"FREQ", b"big").startswith(b"-ERR An LFU maxmemory policy")
        assert counting.reads == 0
        assert call(b"STRLEN", b"nokey") == b":0\r\n"
        assert call(b"MEMORY", b"USAGE", b"nokey") == encode(None)
        assert call(b"OBJECT", b"ENCODING", b"n") == encode(b"int")  # short: read
        assert counting.reads == 1
    finally:
        db.close()
