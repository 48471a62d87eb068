"""How every part of the project shows an address: ``host:port``, IPv6 in brackets;
and a URL with its secret hidden (``redact_url``), for every message that names one.

An IPv6 literal's own colons make ``::1:7379`` ambiguous (is the port 7379, or part
of the address?), so the shell prompt, the CLI's and the client's messages, URLs and
the server's log lines all write ``[::1]:7379`` (RFC 3986 3.2.2), through this one
function. A twemproxy (nutcracker) server line is not an address shown here: its
``host:port`` is hashed onto the ring as written, and stays as written.
"""

from __future__ import annotations

__all__ = ["host_port", "redact_url"]


def host_port(host: str, port: int | str) -> str:
    """``host:port``, with an IPv6 host in brackets (already bracketed: kept).

    Example:
        >>> host_port("::1", 7379)
        '[::1]:7379'
        >>> host_port("127.0.0.1", 7379)
        '127.0.0.1:7379'
        >>> host_port("db.local", "7380")
        'db.local:7380'
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def redact_url(url: str) -> str:
    """`url` with the password of its user info replaced by `***`, for messages (a
    user info without a colon is hidden whole: it may be the password).

    Found by hand, not by `urlsplit`, so even a URL it refuses is shown redacted
    (a password may hold `@`: the user info ends at the last one, as urlsplit reads it).
    The client's errors and the shell's messages both show URLs through it.

    Example:
        >>> redact_url("redis://ann:s3cret@cache:6380/0"), redact_url("bitcask://h")
        ('redis://ann:***@cache:6380/0', 'bitcask://h')
        >>> redact_url("bitcask://:s3cret@h:7379"), redact_url("bitcask://s3cret@h")
        ('bitcask://:***@h:7379', 'bitcask://***@h')
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not at:
        return url
    if ":" not in userinfo:
        # `redis://SECRET@host`: redis-cli reads a lone user info as the password, and
        # `bitcask://TOKEN@host` is the documented `:TOKEN@` less its colon
        return f"{scheme}://***@{hostport}{rest[end:]}"
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{hostport}{rest[end:]}"
