"""Opening one connection: TCP connect, keepalive, then hello (+ auth).

Strategy / invariants:
- `open_connection` makes one attempt and either returns a `ClientProtocol` on
  which hello succeeded, or raises; it never leaves a connection behind (every
  failure, a cancellation included, aborts what it opened). The whole attempt is
  bounded by the config's timeout. Retrying, backoff and which errors are worth
  a retry are the caller's policy (client/_client.py), not this module's.
- Failures are typed for that policy: a socket error or a timeout is ConnectError
  ("cannot connect to HOST:PORT: Connection refused" / "no answer within 5 s"), a
  connection lost during hello is ConnectError too unless the server said why
  before closing (TOO_MANY_CONNECTIONS: that ServerError itself) or answered in
  HTTP (an HTTP port: said in the message); a wrong protocol
  version is UnsupportedVersionError, a missing token AuthRequiredError.
- A port that answers the Redis protocol instead is RedisPortError: at once for a
  redis-server (asked in RESP on a second connection only when the hello is late:
  client/_port_probe.py), after the timeout for a RESP answer that cannot tell.
  Nothing is added to a hello answered in time.
- `say_hello` is the one place hello is sent and read (at connect and on
  `Client.hello()`): it checks the protocol version and the token, and applies the
  server's limits to the connection (frame sizes both ways); the caller keeps the
  reply (`server_info`) and the limits it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
from collections.abc import Callable
from typing import Any

from client._config import DEFAULT_PORT, ClientConfig, Limits
from client._port_probe import HelloWatch, RespAnswer
from client._protocol import ClientProtocol, HttpAnswerError
from client.errors import (
    AuthRequiredError,
    ConnectError,
    ConnectionLostError,
    RedisPortError,
    ServerError,
    UnsupportedVersionError,
)
from protocol import DEFAULT_MAX_FRAME, PROTOCOL_VERSION, reply_limit
from protocol.address import host_port

__all__ = ["connect_failure", "open_connection", "say_hello", "set_keepalive"]


async def open_connection(
    config: ClientConfig,
    token: bytes | None,
    setup: Callable[[ClientProtocol], None] | None = None,
) -> tuple[ClientProtocol, dict[str, Any], Limits]:
    """One connection attempt: TCP connect, then hello; bounded by the timeout.

    Args:
        config: where to connect, the timeout, keepalive and client name.
        token: sent in hello when not None.
        setup: called as setup(proto) once the connection is made, before hello
            (the caller's hooks: on_retry, on_timeout).

    Returns:
        (the connection, hello's reply, the server's limits).
    """
    loop = asyncio.get_running_loop()
    proto: ClientProtocol | None = None
    address = host_port(config.host, config.port)
    watch = HelloWatch(config.host, config.port, config.timeout)
    try:
        async with asyncio.timeout(config.timeout):
            transport, proto = await loop.create_connection(
                lambda: ClientProtocol(loop, DEFAULT_MAX_FRAME), config.host, config.port
            )
            await proto.made
            set_keepalive(transport, config.tcp_keepalive)
            if setup is not None:
                setup(proto)
            hello = say_hello(proto, config.client_name, token, math.inf)
            info, limits = await watch.wait(hello)
            return proto, info, limits
    except RedisPortError:
        if proto is not None:
            proto.abort()
        raise
    except ConnectionLostError as exc:
        if proto is not None:
            proto.abort()
        cause = exc.__cause__
        if isinstance(cause, ServerError):
            raise cause from None  # e.g. TOO_MANY_CONNECTIONS sent before the close
        if isinstance(cause, HttpAnswerError):  # a wrong port, not a lost connection
            raise ConnectError(
                f"cannot connect to {address}: {cause}: it is an HTTP port (a "
                "bitcask-server's --http-port, for health and metrics); connect to its "
                f"binary port (--port, default {DEFAULT_PORT})"
            ) from exc
        raise ConnectError(f"connection to {address} lost during hello") from exc
    except (OSError, TimeoutError) as exc:
        if proto is not None:
            proto.abort()
        why = connect_failure(exc, config.timeout)
        failed = ConnectError(f"cannot connect to {address}: {why}")
        if watch.answer is RespAnswer.RESP and isinstance(exc, TimeoutError):
            # the hello timed out while the port answered RESP: say what answered
            failed.__cause__ = exc
            raise RedisPortError(
                f"{failed}; it answers the Redis protocol, not bitcask's binary one (a "
                "Redis server with a password, or a proxy): check the port, or use "
                "connect_resp()",
                address,
                redis_server=False,
            ) from failed
        raise failed from exc
    except BaseException:
        if proto is not None:
            proto.abort()
        raise


async def say_hello(
    proto: ClientProtocol, client_name: str, token: bytes | None, deadline: float
) -> tuple[dict[str, Any], Limits]:
    """Send hello on `proto` and check its reply; apply the server's frame limits to
    the connection. Returns (the reply, the server's limits).

    Raises:
        UnsupportedVersionError: the server speaks another protocol version.
        AuthRequiredError: the server requires a token and none (or no valid one) was sent.
    """
    opts: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "client": client_name}
    if token is not None:
        opts["auth"] = token
    info = await proto.request("hello", [opts], deadline)
    if not isinstance(info, dict) or info.get("protocol") != PROTOCOL_VERSION:
        raise UnsupportedVersionError.local(
            f"server speaks protocol {info.get('protocol') if isinstance(info, dict) else info!r}, "
            f"this client {PROTOCOL_VERSION}"
        )
    if info.get("auth_required") and not info.get("authenticated"):
        raise AuthRequiredError.local("the server requires a token: pass auth= to connect()")
    limits = Limits.from_hello(info.get("limits"))
    proto.max_frame = limits.max_frame
    proto.set_max_receive(reply_limit(limits.max_frame))
    return info, limits


def set_keepalive(transport: asyncio.BaseTransport | None, seconds: int) -> None:
    """TCP keepalive on a connection (the server's rule, server/_flow.py, as Redis's
    tcp-keepalive): probes after `seconds` of silence, every seconds/3, 3 of them."""
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None or seconds <= 0:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; macOS has only TCP_KEEPALIVE
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, seconds // 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def connect_failure(exc: BaseException, timeout: float | None) -> str:
    """Why a connection attempt failed, in words: a timeout (a host that drops SYNs, a
    server that does not answer hello) says how long was waited; str() of one is empty."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s" if timeout is not None else "timed out"
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)  # "Connection refused", not asyncio's wording
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # a resolver error: "Name or service not known"
    return str(exc) or type(exc).__name__
