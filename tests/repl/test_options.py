"""Connection options: flags, BITCASK_* environment, URLs."""

from __future__ import annotations

import argparse

import pytest

from repl._context import UsageError
from repl._options import add_connection_options, options_from, parse_url


def opts(argv: list[str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    add_connection_options(parser)
    return options_from(parser.parse_args(argv), env or {})


def test_defaults() -> None:
    o = opts([])
    assert (o.host, o.port, o.http_port, o.auth, o.timeout) == ("127.0.0.1", 7379, 7380, None, 5.0)
    assert o.url == "bitcask://127.0.0.1:7379"
    assert o.health_url == "http://127.0.0.1:7380/health"


def test_environment_then_flags() -> None:
    env = {
        "BITCASK_HOST": "h",
        "BITCASK_PORT": "1000",
        "BITCASK_HTTP_PORT": "1001",
        "BITCASK_AUTH": "t",
    }
    o = opts([], env)
    assert (o.host, o.port, o.http_port, o.auth) == ("h", 1000, 1001, "t")
    o = opts(["--port", "2000", "--auth", "u"], env)
    assert (o.host, o.port, o.http_port, o.auth) == ("h", 2000, 1001, "u")


def test_url_sets_host_port_and_token() -> None:
    o = opts(["--url", "bitcask://:s3cret@db.example:7000"], {"BITCASK_HOST": "ignored"})
    assert (o.host, o.port, o.auth) == ("db.example", 7000, "s3cret")
    assert opts(["--url", "bitcask://db", "--port", "9"]).port == 9
    assert opts([], {"BITCASK_URL": "bitcask://e:1"}).host == "e"
    assert parse_url("bitcask://x") == {"host": "x", "port": 7379}


def test_redis_urls() -> None:
    assert parse_url("redis://cache") == {"host": "cache", "port": 6379, "redis": True}
    assert parse_url("redis://ann:p%40ss@cache:6380/2") == {
        "host": "cache",
        "port": 6380,
        "auth": "p@ss",
        "redis": True,
        "username": "ann",
        "db": 2,
    }
    o = opts(["--url", "redis://:pw@h:7000/0"])
    assert (o.redis, o.host, o.port, o.auth, o.username, o.db) == (True, "h", 7000, "pw", None, 0)
    assert o.url == "redis://h:7000"
    assert opts(["--url", "redis://h/3"]).url == "redis://h:6379/3"


def test_redis_flag_and_precedence() -> None:
    o = opts(["--redis"])
    assert (o.redis, o.port, o.url) == (True, 7379, "redis://127.0.0.1:7379")
    # a bitcask:// URL on the command line beats a redis:// one in the environment
    o = opts(["--url", "bitcask://h:1"], {"BITCASK_URL": "redis://u:p@e:2/1"})
    assert (o.redis, o.host, o.port, o.username, o.db) == (False, "h", 1, None, 0)
    o = opts(["--port", "9"], {"BITCASK_URL": "redis://e"})
    assert (o.redis, o.host, o.port) == (True, "e", 9)


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        pytest.param(["--url", "http://x"], {}, "not a bitcask or redis URL", id="scheme"),
        pytest.param(["--url", "rediss://x"], {}, "TLS is not supported", id="rediss"),
        pytest.param(["--url", "redis://x/one"], {}, "bad database number", id="redis-db"),
        pytest.param(["--url", "bitcask://x:99999"], {}, "bad port", id="url-port"),
        pytest.param(["--url", "redis://x:0"], {}, "bad port", id="url-port-0"),
        pytest.param(["--url", "redis://[::1"], {}, "not a valid URL", id="url-ipv6"),
        pytest.param([], {"BITCASK_URL": "bitcask://[::1:7"}, "not a valid URL", id="env-ipv6"),
        pytest.param(["--port", "abc"], {}, "--port must be a port number", id="port"),
        pytest.param([], {"BITCASK_PORT": "0"}, "BITCASK_PORT must be between", id="env-port"),
        pytest.param(["--timeout", "0"], {}, "timeout must be > 0", id="timeout"),
        pytest.param([], {"BITCASK_TIMEOUT": "soon"}, "BITCASK_TIMEOUT", id="env-timeout"),
    ],
)
def test_bad_options(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        opts(argv, env)


@pytest.mark.parametrize(
    "url",
    [
        "rediss://:s3cret@h:6379",
        "redis://ann:s3cret@h:6379/db",
        "redis://:s3cret@h:99999",
        "redis://:s3cret@[::1",
        "bitcask://:s3cret@h:0",
        "http://:s3cret@h",
        "redis://:s3@cret@h:1/x",  # a password may hold an @: the last one ends it
    ],
)
def test_a_refused_url_is_shown_without_its_password(url: str) -> None:
    """`--url redis://:s3cret@[::1` printed a traceback; the other refusals printed the
    URL, password and all, on stderr (and so into CI logs)."""
    with pytest.raises(UsageError) as err:
        opts(["--url", url])
    assert "s3" not in str(err.value) and "cret" not in str(err.value)
    assert ":***@" in str(err.value)
