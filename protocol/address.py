"""How every part of the project shows an address: ``host:port``, IPv6 in brackets.

An IPv6 literal's own colons make ``::1:7379`` ambiguous (is the port 7379, or part
of the address?), so the shell prompt, the CLI's and the client's messages, URLs and
the server's log lines all write ``[::1]:7379`` (RFC 3986 3.2.2), through this one
function. A twemproxy (nutcracker) server line is not an address shown here: its
``host:port`` is hashed onto the ring as written, and stays as written.
"""

from __future__ import annotations

__all__ = ["host_port"]


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
