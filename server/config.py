"""ServerConfig: every knob of bitcask-server in one frozen dataclass, validated once.

Sources, highest first: command-line flags, `BITCASK_<FLAG>` environment variables
(`--http-port` -> `BITCASK_HTTP_PORT`), the defaults below. `from_args()` is the only
constructor the CLI uses; tests build `ServerConfig(...)` directly.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import bitcask
from protocol import DEFAULT_MAX_FRAME

from ._flags import ENV_PREFIX, FLAGS, build_parser

__all__ = ["ENGINE_OPTIONS", "ConfigError", "ServerConfig", "read_token_file"]

# ServerConfig fields handed to bitcask.Options when set (None: the engine's default)
ENGINE_OPTIONS = (
    "sync_interval_ms",
    "max_file_size",
    "max_key_size",
    "max_value_size",
    "merge_trigger",
    "merge_min_dead_bytes",
    "max_keys",
)

SYNC_POLICIES = ("always", "interval", "never")
WRITER_MODES = ("auto", "thread", "executor", "aiofiles", "loop")
LOG_LEVELS = ("debug", "info", "warning", "error")
# The wire protocol keeps frames below 512 MiB so the first byte of a frame is < 0x20.
FRAME_CEILING = 512 * 1024 * 1024
# A put frame's bytes besides its key and value: msgid, method, headers, a ttl map.
PUT_ENVELOPE = 1024
# Longest auth token, bytes. Until it has authenticated, a connection's frames and
# RESP bulks are bounded to 16 KiB (Redis's pre-AUTH rule) and an HTTP head to
# --http-max-header-bytes: a longer token could be configured but never presented.
MAX_TOKEN_BYTES = 4096
# Longest --shutdown-timeout and --drain-seconds (a day): the process's forced-exit
# watchdog is a threading.Timer, which cannot wait past the platform's time_t.
MAX_STOP_SECONDS = 86_400.0
# Linux's bound on TCP_KEEPIDLE (MAX_TCP_KEEPIDLE), seconds
MAX_KEEPALIVE = 32_767


class ConfigError(ValueError):
    """A flag or environment variable has a value the server cannot run with."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs to know at start-up.

    Example:
        >>> cfg = ServerConfig(data=Path("./data"), port=7379, http_port=7380)
        >>> cfg.sync
        'always'
    """

    # --- store ---
    data: Path = Path("./data")  # data directory of the store (created if missing)
    sync: str = "always"  # engine sync policy: always | interval | never
    sync_interval_ms: int | None = None  # for sync=interval; None: the engine's default
    # engine options (bitcask.Options validates them); None: the engine's default
    max_file_size: int | None = None  # rotate data files at this size, bytes
    max_key_size: int | None = None  # longest key accepted, bytes (KEY_TOO_LARGE above)
    max_value_size: int | None = None  # largest value accepted, bytes (VALUE_TOO_LARGE above)
    merge_trigger: float | None = None  # auto-merge at this dead/disk ratio; 0 disables
    merge_min_dead_bytes: int | None = None  # ... once at least this many bytes are dead
    max_keys: int | None = None  # most keys held (STORE_FULL for new keys past it); 0: no limit
    # --- listeners ---
    host: str = "127.0.0.1"  # loopback by default: exposing the store is a decision
    port: int = 7379  # binary protocol and the Redis protocol (RESP)
    http_port: int = 7380  # HTTP adapter
    # --- security ---
    # shared token; None: no authentication (bytes: `auth_token`); kept out of repr()
    auth: str | None = field(default=None, repr=False)
    # with auth: seconds a binary/Redis connection may stay unauthenticated before it is
    # closed (PostgreSQL's authentication_timeout); else a client without the token that
    # pinged now and then held its connection slot for good; 0: no deadline
    auth_timeout: float = 60.0
    # --- limits ---
    max_connections: int = 1024  # binary + HTTP connections together
    max_frame: int = DEFAULT_MAX_FRAME  # binary frame and HTTP body limit, bytes
    max_batch: int = 10_000  # operations in one batch/mput/mget
    # values (or keys) in one reply: MGET, EXEC, KEYS, SCAN, binary mget/scan, bytes
    # (Redis's client-output-buffer-limit, per reply; the binary port: at most max_frame)
    max_reply_bytes: int = 128 * 1024 * 1024
    # per Redis connection: bytes a MULTI queue may hold (its arguments, and 64 bytes for
    # each argument and command queued); at least max_frame, so one command of the
    # largest size always queues. Unbounded, 1,000,000 queued SETs held 250 MB. The
    # keys it WATCHes are bounded by it too, apart (each key plus 160 bytes)
    max_multi_bytes: int = 128 * 1024 * 1024
    # snapshots (online backups) one connection may hold at once: each keeps its files
    # from merges and open (one descriptor each); unbounded, 300 snapshot_begin of one
    # connection with a put between each left 602 files and 325 descriptors open
    max_snapshots: int = 4
    # bytes all connections together may hold in requests not complete yet (partial
    # frames and commands, HTTP bodies arriving); over it the largest holder is refused.
    # 512 MiB: about 8 requests of the largest size at once, thousands of usual ones;
    # the per-connection --max-frame alone allowed 1024 x 65 MiB. In force: at least
    # max_frame + 4 (``partial_input_budget``), so the largest request always fits
    max_partial_input: int = 512 * 1024 * 1024
    # seconds a request started may take to arrive whole (binary, Redis, HTTP body);
    # 0: no deadline. 300: a 65 MiB frame at 1.8 Mbit/s, a 1 MiB value at 3.5 KB/s
    request_timeout: float = 300.0
    idle_timeout: float = 300.0  # seconds without traffic before a connection is closed; 0: never
    # seconds a connection may be silent before the kernel probes its peer (SO_KEEPALIVE,
    # as Redis's tcp-keepalive): a peer that vanished is dropped even with idle_timeout 0,
    # and a NAT keeps the flow of a client idle between calls; 0: off
    tcp_keepalive: int = 300
    max_inflight: int = 1024  # per connection: pause reading above, resume at half
    writer_queue_max: int = 8192  # queued write requests: pause every writing reader above
    # --- HTTP ---
    http_keepalive: float = 5.0  # idle seconds between requests on a keep-alive connection
    http_header_timeout: float = 10.0  # seconds to send a whole request head (slowloris)
    http_body_timeout: float = 30.0  # seconds of silence allowed while a body arrives
    http_max_header_bytes: int = 16 * 1024  # request line + headers, bytes (431 above)
    # --- process ---
    writer: str = "auto"  # how the writer runs write_group (see server/_writer.py)
    shutdown_timeout: float = 10.0  # graceful-stop budget before the process is forced out
    # after SIGTERM: seconds /readyz answers 503 while everything else is still served, so
    # load balancers stop sending work before the listeners close (SIGINT skips it)
    drain_seconds: float = 5.0
    # after a failed fsync the store refuses writes until a restart; /livez fails once the
    # fault is this many seconds old, so an orchestrator restarts the process
    fsync_failure_grace: float = 30.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def partial_input_budget(self) -> int:
        """--max-partial-input in force: at least one frame of the largest size."""
        return max(self.max_partial_input, self.max_frame + 4)

    @property
    def auth_token(self) -> bytes | None:
        """The token as the bytes a client must present, or None without --auth.

        The bytes the operator gave: argv and the environment reach Python decoded
        with the file-system encoding and surrogateescape, so a token that is not
        UTF-8 (`--auth $'\\xff'`) is its own bytes again, as redis-server's
        requirepass would be, instead of a UnicodeEncodeError at start-up.
        """
        return None if self.auth is None else os.fsencode(self.auth)

    @property
    def resolved_writer(self) -> str:
        """The writer mode actually used; "auto" picks what bench/server.py measured.

        Under always/interval the fsync must stay off the loop. Over four runs of the
        writer-mode table (50 connections, depth 1, puts) a dedicated thread and the
        loop's default executor tied within noise (thread 35k/s at 24.4 us CPU per put
        against 34k/s at 25.0 us in the quietest run; the order flipped in another),
        and aiofiles (the same executor behind a coroutine) was never ahead. The
        dedicated thread is kept: write_group and close always run on the same thread,
        and a merge or store open in the default executor cannot delay a commit.
        Under never, write_group on the loop itself costs least (15.8 vs 19.6 us).
        """
        if self.writer != "auto":
            return self.writer
        return "loop" if self.sync == "never" else "thread"

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
    ) -> ServerConfig:
        """Build a config from command-line flags and `BITCASK_*` environment variables.

        Args:
            argv: the arguments after the program name (default: sys.argv[1:]).
            env: the environment (default: os.environ).

        Returns:
            The validated config.

        Raises:
            ConfigError: a value is out of range or malformed (argparse exits with
                status 2 on an unknown flag before this is reached).

        Example:
            >>> ServerConfig.from_args(["--port", "0"], env={"BITCASK_SYNC": "never"}).sync
            'never'
        """
        env = os.environ if env is None else env
        parser = build_parser()
        ns = parser.parse_args(argv)
        values: dict[str, Any] = {}
        from_env: dict[str, str] = {}  # field -> the BITCASK_* value it came from
        auth_file = ns.auth_file or env.get(ENV_PREFIX + "AUTH_FILE") or None
        if auth_file is not None:
            if ns.auth is not None or env.get(ENV_PREFIX + "AUTH") is not None:
                raise ConfigError(
                    "give the token once: --auth-file (BITCASK_AUTH_FILE) or --auth "
                    "(BITCASK_AUTH), not both"
                )
            values["auth"] = read_token_file(Path(auth_file))
        for f in fields(cls):
            flag_value = getattr(ns, f.name, None)
            if flag_value is not None:
                values[f.name] = flag_value
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw == "" and f.name == "auth":
                # empty is "not set" for every other variable; here that would fail
                # open (a Secret templated to nothing served the store to anyone)
                raise ConfigError(
                    f"{ENV_PREFIX}AUTH is set but empty: give the token, or unset it "
                    "to run without authentication"
                )
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, raw)
                from_env[f.name] = raw
        if "max_frame" not in values and ("max_value_size" in values or "max_key_size" in values):
            # One limit for every way in: larger store limits raise the frame (binary
            # requests, HTTP bodies, RESP bulks) so a put of the longest key with the
            # largest value fits, as the default frame fits the default limits.
            engine = bitcask.Options()
            need = (
                values.get("max_value_size", engine.max_value_size)
                + values.get("max_key_size", engine.max_key_size)
                + PUT_ENVELOPE
            )
            values["max_frame"] = max(DEFAULT_MAX_FRAME, min(need, FRAME_CEILING - 1))
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(_name_the_variable(str(exc), from_env)) from None


def _name_the_variable(message: str, from_env: Mapping[str, str]) -> str:
    """A refusal of a value that came from the environment names its variable: the
    flag's name alone sent an operator looking through the command line for a value
    that a ConfigMap set. Tokens are never echoed."""
    for name, raw in from_env.items():
        if re.match(re.escape(name.replace("_", "-")) + r"(?![\w-])", message):
            shown = "..." if name == "auth" else repr(raw)
            return f"{message} (from {ENV_PREFIX}{name.upper()}={shown})"
    return message


def read_token_file(path: Path) -> str:
    """The token held by `path` (--auth-file): its bytes, less one final line end.

    `echo TOKEN > file` and a Kubernetes Secret made from such a file end with a
    newline that is not part of the token; any other whitespace or control byte is
    kept, and refused by the validation (a token no client would send).

    Raises:
        ConfigError: the file cannot be read (the message names the file, never
            its content).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read --auth-file {str(path)!r}: {exc.strerror}") from None
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    if not raw:
        raise ConfigError(f"--auth-file {str(path)!r} is empty: it must hold the token")
    return os.fsdecode(raw)


# what a BITCASK_* value must be, by its flag's type, for the error (Python's own
# "invalid literal for int() with base 10" says nothing to an operator)
_KINDS: dict[Any, str] = {int: "a whole number", float: "a number"}


def _convert(name: str, raw: str) -> Any:
    typ = FLAGS[name][0]
    try:
        return typ(raw)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        why = f"must be {_KINDS[typ]}" if typ in _KINDS else str(exc)
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {why} (as {flag})") from None


def _validate_token(cfg: ServerConfig, fail: Callable[[str], None]) -> None:
    """A token every front end can carry: HTTP trims a header value's surrounding
    whitespace and forbids control bytes in it, an inline Redis command splits at
    spaces and ends at CR/LF, and before authenticating a frame is at most 16 KiB.
    A token outside these rules would start a server no client can log in to (a
    Secret with a trailing newline, the usual case): refused here, naming the rule,
    never echoing the token (it lands in a journal)."""
    token = cfg.auth_token
    assert token is not None
    if not token:
        fail("auth token must not be empty")
    elif len(token) > min(MAX_TOKEN_BYTES, cfg.http_max_header_bytes // 2):
        fail(
            f"auth token of {len(token)} bytes is too long: at most {MAX_TOKEN_BYTES} "
            "(and half of --http-max-header-bytes)"
        )
    elif any(b < 0x20 or b == 0x7F for b in token):
        if token.endswith((b"\n", b"\r")):
            fail("auth token ends with a newline (a Secret made with `echo`?): remove it")
        fail("auth token holds a control character (tab, newline, ...): no client can send it")
    elif token != token.strip(b" "):
        fail("auth token starts or ends with a space: HTTP clients cannot send it")


def _validate(cfg: ServerConfig) -> None:
    def fail(msg: str) -> None:
        raise ConfigError(msg)

    if cfg.sync not in SYNC_POLICIES:
        fail(f"sync must be one of {', '.join(SYNC_POLICIES)}, not {cfg.sync!r}")
    if cfg.sync_interval_ms is not None and cfg.sync_interval_ms <= 0:
        fail("sync-interval-ms must be > 0")
    for name in ("port", "http_port"):
        value = getattr(cfg, name)
        if not 0 <= value <= 65535:
            fail(f"{name.replace('_', '-')} must be in 0..65535, not {value}")
    if cfg.port != 0 and cfg.port == cfg.http_port:
        fail(
            f"--port and --http-port are both {cfg.port}: the binary and HTTP ports must "
            "differ, pass another --http-port"
        )
    if not cfg.host:
        fail("host must not be empty")
    if cfg.auth is not None:
        _validate_token(cfg, fail)
    if cfg.max_connections < 1:
        fail("max-connections must be >= 1")
    if not 1024 <= cfg.max_frame < FRAME_CEILING:
        fail(f"max-frame must be in 1024..{FRAME_CEILING - 1}")
    if cfg.max_value_size is not None and cfg.max_value_size >= cfg.max_frame:
        # Such a value could be built by APPEND but never put by any protocol.
        fail(
            f"max-value-size {cfg.max_value_size} does not fit in a frame (max-frame "
            f"{cfg.max_frame}, at most {FRAME_CEILING - 1}): lower it or raise --max-frame"
        )
    if cfg.max_partial_input < 1:
        fail("max-partial-input must be >= 1")
    if cfg.max_batch < 1:
        fail("max-batch must be >= 1")
    if cfg.max_reply_bytes < 1:
        fail("max-reply-bytes must be >= 1")
    if cfg.max_multi_bytes < 1:
        fail("max-multi-bytes must be >= 1")
    if cfg.max_snapshots < 1:
        fail("max-snapshots must be >= 1")
    if not 0 <= cfg.tcp_keepalive <= MAX_KEEPALIVE:
        fail(f"tcp-keepalive must be in 0..{MAX_KEEPALIVE} seconds")
    if cfg.max_inflight < 2:
        fail("max-inflight must be >= 2")
    if cfg.writer_queue_max < 1:
        fail("writer-queue-max must be >= 1")
    if cfg.http_max_header_bytes < 1024:
        fail("http-max-header-bytes must be >= 1024")
    for name in (
        "idle_timeout",
        "request_timeout",
        "auth_timeout",
        "http_keepalive",
        "http_header_timeout",
        "http_body_timeout",
    ):
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0:
            fail(f"{name.replace('_', '-')} must be a finite number >= 0")
    if not 0 < cfg.shutdown_timeout <= MAX_STOP_SECONDS:
        fail(f"shutdown-timeout must be > 0 and <= {MAX_STOP_SECONDS:.0f} (a day)")
    if not 0 <= cfg.drain_seconds <= MAX_STOP_SECONDS:
        fail(f"drain-seconds must be in 0..{MAX_STOP_SECONDS:.0f} (a day)")
    if not math.isfinite(cfg.fsync_failure_grace) or cfg.fsync_failure_grace < 0:
        fail("fsync-failure-grace must be a finite number >= 0")
    if cfg.writer not in WRITER_MODES:
        fail(f"writer must be one of {', '.join(WRITER_MODES)}, not {cfg.writer!r}")
    if cfg.log_level.lower() not in LOG_LEVELS:
        fail(f"log-level must be one of {', '.join(LOG_LEVELS)}")
