"""The Redis dialect's connection and server commands (AUTH, HELLO, CLIENT, INFO, ...).

Strategy: a mixin of `RedisDispatcher` (server/_redis.py), as the other command
families are (_redis_strings.py, _redis_keys.py, _redis_transactions.py): one handler
per command, handler(session, command, tx) -> Step. These commands touch the
connection's session or read the server's facts; none of them writes the store.
"""

from __future__ import annotations

import hmac
import math
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from protocol import redis_commands as rc
from protocol._glob import compile_glob
from protocol._resp_writer import Verbatim, encode

from ._dispatch import SERVER_VERSION
from ._redis_session import (
    HELLO_NOAUTH,
    NOPASS,
    OK,
    REDIS_VERSION,
    WRONGPASS,
    RedisError,
    RedisSession,
    Step,
)
from .config import ServerConfig

__all__ = ["AdminCommands", "bulk_strings"]


class AdminCommands:
    """Connection and server commands; mixed into RedisDispatcher, whose state they use."""

    _db: Any
    _config: ServerConfig
    _token: bytes | None
    _info: Callable[[], dict[str, Any]]
    _run_id: str
    _sessions: dict[int, RedisSession]  # the open RESP connections, by id, oldest first

    def _ping(self, s: RedisSession, c: rc.Ping, tx: bool) -> Step:
        return Step(b"+PONG\r\n" if c.message is None else encode(c.message, s.proto))

    def _check_password(self, user: bytes | None, password: bytes) -> bool:
        assert self._token is not None
        return (user is None or user == b"default") and hmac.compare_digest(password, self._token)

    def _auth(self, s: RedisSession, c: rc.Auth, tx: bool) -> Step:
        if self._token is None:
            if c.username is None:
                raise RedisError(NOPASS)
            if c.username != b"default":
                raise RedisError(WRONGPASS)
            return Step(OK)
        if not self._check_password(c.username, c.password):
            raise RedisError(WRONGPASS)
        s.authenticated = True
        return Step(OK)

    def _hello(self, s: RedisSession, c: rc.Hello, tx: bool) -> Step:
        # Redis 7.0's order: each option at once, an option error after the ones
        # before it took effect, then the login check (rc.Hello's docstring).
        for kind, arg, password in c.options:
            if kind == "setname":
                s.name = arg
            elif self._token is None:
                if arg != b"default":
                    raise RedisError(WRONGPASS)
            elif not self._check_password(arg, password):
                raise RedisError(WRONGPASS)
            else:
                s.authenticated = True
        if c.error is not None:
            raise RedisError(c.error)
        if not s.authenticated:
            raise RedisError(HELLO_NOAUTH)
        if c.protover is not None:
            s.proto = c.protover
        reply: dict[bytes, Any] = {
            b"server": b"redis",
            b"version": REDIS_VERSION.encode(),
            b"proto": s.proto,
            b"id": s.id,
            b"mode": b"standalone",
            b"role": b"master",
            b"modules": [],
        }
        return Step(encode(reply, s.proto))

    def _select(self, s: RedisSession, c: rc.Select, tx: bool) -> Step:
        if c.index != 0:
            raise RedisError("ERR DB index is out of range")
        return Step(OK)

    def _reset(self, s: RedisSession, c: rc.Reset, tx: bool) -> Step:
        s.unwatch()
        s.multi, s.dirty = None, False
        s.proto = 2
        s.name = b""
        s.authenticated = self._token is None
        return Step(b"+RESET\r\n")

    def _client_setname(self, s: RedisSession, c: rc.ClientSetName, tx: bool) -> Step:
        s.name = c.client_name
        return Step(OK)

    def _client_list(self, s: RedisSession, c: rc.ClientList, tx: bool) -> Step:
        if c.ids is None:
            listed = list(self._sessions.values()) if c.normal else []
        else:  # as Redis: in the order asked, an id named twice listed twice
            listed = [self._sessions[i] for i in c.ids if i in self._sessions]
        text = "".join(session.describe() + "\n" for session in listed)
        return Step(encode(Verbatim(text.encode()), s.proto))

    def _client_kill(self, s: RedisSession, c: rc.ClientKill, tx: bool) -> Step:
        # Redis 7.0's KILL: every filter given must match; the caller is skipped unless
        # SKIPME no or the old form. A killed connection leaves CLIENT LIST now, runs
        # nothing more it sends, and closes once the replies already due are out: its
        # writes already accepted are applied and answered (the caller's: after this
        # reply). TYPE other than normal and USER other than default match none here.
        now = time.monotonic()
        killed = 0
        for target in list(self._sessions.values()):
            link = target.link
            if (
                (c.addr is not None and c.addr != link.addr.encode())
                or (c.laddr is not None and c.laddr != link.laddr.encode())
                or (c.id and target.id != c.id)
                or c.normal is False
                or (c.maxage and int(now - target.created) <= c.maxage)
                or (c.skipme and target is s)
            ):
                continue
            del self._sessions[target.id]
            target.kill()
            killed += 1
        if not c.old:
            return Step(encode(killed))
        if not killed:
            raise RedisError("ERR No such client")
        return Step(OK)

    def _client_info(self, s: RedisSession, c: rc.ClientInfo, tx: bool) -> Step:
        return Step(encode(Verbatim((s.describe() + "\n").encode()), s.proto))

    def _client_no_evict(self, s: RedisSession, c: rc.ClientNoEvict, tx: bool) -> Step:
        # No client is ever evicted and no key's LRU/LFU is tracked here: the flags
        # show in CLIENT LIST (e, T) and change nothing else. RESET keeps them (Redis 7.0).
        if c.name == "client|no-evict":
            s.no_evict = c.on
        else:
            s.no_touch = c.on
        return Step(OK)

    def _client_setinfo(self, s: RedisSession, c: rc.ClientSetInfo, tx: bool) -> Step:
        if c.attribute == "lib-name":
            s.lib_name = c.value
        else:
            s.lib_ver = c.value
        return Step(OK)

    def _config_params(self) -> dict[str, str]:
        cfg = self._config
        return {
            "appendonly": "yes",
            "appendfsync": {"always": "always", "interval": "everysec"}.get(cfg.sync, "no"),
            "databases": "1",
            # the cap in force, not the flag: fitted below the descriptor limit at start
            "maxclients": str(self._info().get("max_connections", cfg.max_connections)),
            "maxmemory": "0",
            "port": str(cfg.port),
            "bind": cfg.host,
            "requirepass": "",
            "save": "",
            # whole seconds, as Redis keeps it; rounded up, as "0" means never
            "timeout": str(math.ceil(cfg.idle_timeout)),
            "tcp-keepalive": str(cfg.tcp_keepalive),
            "proto-max-bulk-len": str(cfg.max_frame),
        }

    def _config_get(self, s: RedisSession, c: rc.ConfigGet, tx: bool) -> Step:
        # Redis 7.0: names match case-insensitively; a name without `[*?` is answered
        # as the client spelled it (CONFIG GET MAXMEMORY -> MAXMEMORY 0), a pattern's
        # matches by their own names; a parameter is answered once, as first named.
        params = self._config_params()
        out: dict[bytes, tuple[bytes, bytes]] = {}  # lower-case name -> (name, value)
        for pattern in c.patterns:
            low = pattern.lower()
            if not any(ch in low for ch in b"[*?"):
                value = params.get(low.decode("latin-1"))
                if value is not None and low not in out:
                    out[low] = (pattern, value.encode())
                continue
            match = compile_glob(low)
            for name, value in params.items():
                key = name.encode()
                if key not in out and match(key):
                    out[key] = (key, value.encode())
        return Step(encode(dict(out.values()), s.proto))

    def _time(self, s: RedisSession, c: rc.Time, tx: bool) -> Step:
        now = time.time_ns() // 1000
        return Step(encode([str(now // 1_000_000).encode(), str(now % 1_000_000).encode()]))

    def _info_cmd(self, s: RedisSession, c: rc.Info, tx: bool) -> Step:
        sections = set(c.sections)
        proto = s.proto
        return Step(read=lambda: encode(Verbatim(self._info_text(sections)), proto))

    def _info_text(self, sections: set[str]) -> bytes:
        every = not sections or sections & {"all", "everything", "default"}
        facts = self._info()
        # db.stats() walks the keydir: only the sections that show its figures pay
        stats = self._db.stats() if every or sections & {"memory", "persistence"} else {}
        expiry = self._db.expiry_stats()  # O(1) counters, as the keyspace line's
        keys = self._db.stored_keys()
        out: list[str] = []

        def section(name: str, fields: Callable[[], dict[str, Any]]) -> None:
            if every or name in sections:
                out.append("# CPU" if name == "cpu" else f"# {name.capitalize()}")
                out.extend(f"{k}:{v}" for k, v in fields().items())
                out.append("")

        uptime = int(facts.get("uptime_seconds", 0))
        section(
            "server",
            lambda: {
                "redis_version": REDIS_VERSION,
                "bitcask_version": SERVER_VERSION,
                "redis_mode": "standalone",
                "os": os.uname().sysname,
                "process_id": os.getpid(),
                "run_id": self._run_id,
                "tcp_port": facts.get("port", self._config.port),
                "uptime_in_seconds": uptime,
                "uptime_in_days": uptime // 86400,
            },
        )
        section(
            "clients",
            lambda: {
                "connected_clients": facts.get("connections", 0),
                "maxclients": facts.get("max_connections", self._config.max_connections),
                "blocked_clients": 0,
            },
        )
        section(
            "memory",
            lambda: {
                "used_memory": stats["keydir_bytes"],
                "keydir_bytes": stats["keydir_bytes"],
                "keydir_bytes_per_key": stats["keydir_bytes_per_key"],
                "maxmemory": 0,
                "maxmemory_policy": "noeviction",
            },
        )
        section(
            "persistence",
            lambda: {
                "loading": 0,
                "aof_enabled": 1,
                "sync": stats["sync"],
                "disk_bytes": stats["disk_bytes"],
                "live_bytes": stats["live_bytes"],
                "dead_bytes": stats["dead_bytes"],
                "merging": int(bool(stats["merging"])),
                "readonly": int(bool(stats["readonly"])),
            },
        )
        section(
            "stats",
            lambda: {
                "total_connections_received": facts.get("connections_total", 0),
                "total_commands_processed": sum(facts.get("requests", {}).values()),
                "rejected_connections": facts.get("connections_refused", 0),
                "partial_input_bytes": facts.get("partial_input_bytes", 0),
                "partial_input_refused": facts.get("partial_input_refused", 0),
                "request_timeouts": facts.get("request_timeouts", 0),
                "group_commits": facts.get("group_commits", 0),
                "expired_keys": expiry["expired_keys"],
            },
        )
        # role:master is what health checks and exporters read (the section was missing)
        section("replication", lambda: {"role": "master", "connected_slaves": 0})
        section("cpu", _cpu_fields)
        # what `redis-cli --cluster` and cluster-aware clients read to tell a standalone server
        section("cluster", lambda: {"cluster_enabled": 0})
        # Redis's line: avg_ttl is the sampler's running estimate (ms), as in Redis
        line = f"keys={keys},expires={expiry['expires']},avg_ttl={expiry['avg_ttl_ms']}"
        section("keyspace", lambda: {"db0": line} if keys else {})
        return "\r\n".join(out).encode()


def _cpu_fields() -> dict[str, str]:
    """INFO cpu: the server process's CPU seconds, as Redis prints them."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "used_cpu_sys": f"{own.ru_stime:.6f}",
        "used_cpu_user": f"{own.ru_utime:.6f}",
        "used_cpu_sys_children": f"{children.ru_stime:.6f}",
        "used_cpu_user_children": f"{children.ru_utime:.6f}",
    }


def bulk_strings(value: Any) -> Any:
    """Every str as bytes (bulk strings), as Redis sends COMMAND DOCS (redis-cli checks)."""
    if type(value) is str:
        return value.encode()
    if type(value) is dict:  # an argument's "flags" stay simple strings, as in Redis
        return {bulk_strings(k): v if k == "flags" else bulk_strings(v) for k, v in value.items()}
    if type(value) is list:
        return [bulk_strings(v) for v in value]
    return value
