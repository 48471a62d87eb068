"""Connection options shared by `bitcask-shell` and `bitcask`: flags and BITCASK_* env.

Precedence, lowest to highest: defaults, BITCASK_URL, BITCASK_HOST / BITCASK_PORT /
BITCASK_HTTP_PORT / BITCASK_AUTH, --url, --host / --port / --http-port / --auth. A URL
is `bitcask://[:TOKEN@]HOST[:PORT]`; its token, when present, is the auth token. A
`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` URL (or --redis) speaks the Redis protocol
instead, to any Redis-protocol endpoint; `rediss://` (TLS) is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import replace
from typing import NoReturn

from protocol.address import redact_url

from ._context import DEFAULT_HTTP_PORT, DEFAULT_PORT, ConnectOptions, UsageError
from ._format import terminal_safe

__all__ = [
    "Parser",
    "add_connection_options",
    "add_output_options",
    "add_version_option",
    "options_from",
    "parse_url",
    "raw_output",
]


REDIS_PORT = 6379  # a redis:// URL without a port, as every Redis client reads it


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (exit 2), with what to do and no secret.

    argparse printed its whole usage (4 lines) before the error, and echoed a stray
    `redis://:PASSWORD@host` word as it was; a URL is shown redacted, and a URL where
    a flag was expected is pointed at --url. --help still prints the usage.
    """

    def error(self, message: str) -> NoReturn:
        words = message.split(" ")
        url = any("://" in w for w in words)
        message = " ".join(redact_url(w) if "://" in w else w for w in words)
        message = terminal_safe(message)  # argparse quotes a bad word as it was typed
        hint = "a URL goes after --url; " if url else ""
        self.exit(2, f"{self.prog}: {message} ({hint}{self.prog} --help lists the options)\n")


def parse_url(url: str) -> dict[str, object]:
    """host/port/auth from `bitcask://[:token@]host[:port]`, or from
    `redis://[[user]:password@]host[:port][/db]` (plus redis, username, db).

    Raises:
        UsageError: not a bitcask:// or redis:// URL, a bad port or db, or
            rediss:// (TLS, which neither the shell nor the server speaks).

    Example:
        >>> parse_url("bitcask://db.local:7000")
        {'host': 'db.local', 'port': 7000}
        >>> parse_url("redis://:s3cret@cache:6380/0")
        {'host': 'cache', 'port': 6380, 'auth': 's3cret', 'redis': True}
    """
    shown = redact_url(url)  # a message must not print the password (CI logs, screens)
    expected = "expected bitcask://HOST[:PORT] or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # `redis://[::1` (an unclosed IPv6 bracket)
        raise UsageError(f"not a valid URL: {shown!r}: {exc} ({expected})") from None
    if parts.scheme == "rediss":
        raise UsageError(
            f"TLS is not supported: {shown!r} asks for rediss://; use redis:// over a "
            "private network or a tunnel (stunnel, ssh -L)"
        )
    redis = parts.scheme == "redis"
    if not (redis or parts.scheme == "bitcask") or not parts.hostname:
        raise UsageError(f"not a bitcask or redis URL: {shown!r} ({expected})")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # `:0` is no port to connect to, as --port 0 is refused
        raise UsageError(f"bad port in {shown!r} (expected 1-65535)")
    out: dict[str, object] = {
        "host": parts.hostname,
        "port": port or (REDIS_PORT if redis else DEFAULT_PORT),
    }
    if parts.password:
        out["auth"] = urllib.parse.unquote(parts.password)
    if not redis:
        return out
    out["redis"] = True
    if parts.username:
        out["username"] = urllib.parse.unquote(parts.username)
    db = parts.path.strip("/")
    if db:
        if not db.isdigit():
            raise UsageError(f"bad database number {db!r} in {shown!r} (expected /0, /1, ...)")
        if int(db):
            out["db"] = int(db)
    return out


def _with_url(opts: ConnectOptions, url: str) -> ConnectOptions:
    """`opts` pointed at `url`: its scheme decides the protocol (nothing carried over)."""
    reset = ConnectOptions()
    base = replace(opts, redis=reset.redis, username=reset.username, db=reset.db)
    return replace(base, **parse_url(url))  # type: ignore[arg-type]


def _port(value: str, name: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise UsageError(f"{name} must be a port number, got {value!r}") from None
    if not 0 < port < 65536:
        raise UsageError(f"{name} must be between 1 and 65535, got {port}")
    return port


class _Version(argparse.Action):
    """`--version`: looks the version up only when asked (importlib.metadata is slow).

    The installed metadata, not `bitcask.__version__`: importing the engine for this
    took ~0.2 s. The build writes that string into the metadata (pyproject.toml's
    `dynamic`), so the two agree in any installed copy.
    """

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        import importlib.metadata
        import platform

        try:
            version = importlib.metadata.version("bitcask")
        except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
            version = "unknown (not installed)"
        sys.stdout.write(f"{parser.prog} {version} (Python {platform.python_version()})\n")
        parser.exit(0)


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """`--version`, printing `PROG VERSION (Python X.Y.Z)`."""
    parser.add_argument("--version", action=_Version)


def add_output_options(parser: argparse.ArgumentParser, *, piped: str = "") -> None:
    """--raw / --no-raw into `args.raw` (None: neither given); `raw_output` reads it.

    `piped` names the mode the flags apply to, for their help (the shell's prompt is
    always formatted)."""
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--raw", dest="raw", action="store_true", default=None,
                     help=f"raw output even on a terminal{piped}")  # fmt: skip
    out.add_argument("--no-raw", dest="raw", action="store_false",
                     help=f"formatted output even when piped{piped}")  # fmt: skip


def raw_output(args: argparse.Namespace) -> bool:
    """The one output rule, redis-cli's: a value's exact bytes when stdout is not a
    terminal, the formatted form (quoted, escaped: no control byte of a key or value
    reaches the terminal) when it is; --raw / --no-raw override it."""
    return not sys.stdout.isatty() if args.raw is None else bool(args.raw)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """--host --port --url --redis --auth --http-port --timeout (most also from BITCASK_*)."""
    group = parser.add_argument_group("connection (also from BITCASK_* environment variables)")
    group.add_argument("--host", help="server host (BITCASK_HOST; default 127.0.0.1)")
    group.add_argument("--port", help=f"binary port (BITCASK_PORT; default {DEFAULT_PORT})")
    group.add_argument(
        "--url",
        help="bitcask://[:TOKEN@]HOST[:PORT], or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] "
        "for any Redis-protocol endpoint (BITCASK_URL)",
    )
    group.add_argument(
        "--redis",
        action="store_true",
        help="speak the Redis protocol to --host/--port (a bitcask-server's port, "
        "redis-server, twemproxy)",
    )
    group.add_argument("--auth", metavar="TOKEN", help="auth token (BITCASK_AUTH)")
    group.add_argument(
        "--http-port",
        help="HTTP port, for health (BITCASK_HTTP_PORT; default: the one the server on "
        f"--port reports, else {DEFAULT_HTTP_PORT})",
    )
    group.add_argument(
        "--timeout", type=float, help="seconds to wait for the server (BITCASK_TIMEOUT; default 5)"
    )


def options_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> ConnectOptions:
    """ConnectOptions from parsed flags and the environment.

    Raises:
        UsageError: a bad URL, port or timeout.
    """
    env = os.environ if env is None else env
    opts = ConnectOptions()
    if env.get("BITCASK_URL"):
        opts = _with_url(opts, env["BITCASK_URL"])
    if env.get("BITCASK_HOST"):
        opts = replace(opts, host=env["BITCASK_HOST"])
    if env.get("BITCASK_PORT"):
        opts = replace(opts, port=_port(env["BITCASK_PORT"], "BITCASK_PORT"))
    if env.get("BITCASK_HTTP_PORT"):
        http_port = _port(env["BITCASK_HTTP_PORT"], "BITCASK_HTTP_PORT")
        opts = replace(opts, http_port=http_port, http_port_given=True)
    if env.get("BITCASK_AUTH"):
        opts = replace(opts, auth=env["BITCASK_AUTH"])
    if env.get("BITCASK_TIMEOUT"):
        try:
            opts = replace(opts, timeout=float(env["BITCASK_TIMEOUT"]))
        except ValueError:
            raise UsageError(
                f"BITCASK_TIMEOUT must be seconds, got {env['BITCASK_TIMEOUT']!r}"
            ) from None
    if args.url:
        opts = _with_url(opts, args.url)
    if getattr(args, "redis", False):
        opts = replace(opts, redis=True)
    if args.host:
        opts = replace(opts, host=args.host)
    if args.port:
        opts = replace(opts, port=_port(args.port, "--port"))
    if args.http_port:
        opts = replace(opts, http_port=_port(args.http_port, "--http-port"), http_port_given=True)
    if args.auth:
        opts = replace(opts, auth=args.auth)
    if args.timeout is not None:
        opts = replace(opts, timeout=args.timeout)
    if not opts.timeout > 0:
        raise UsageError(f"timeout must be > 0 seconds, got {opts.timeout:g}")
    return opts
