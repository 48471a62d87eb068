"""The events a server-side connection hands out (protocol/connection.py's Connection).

Strategy: their own module so that every dialect (binary and inline in connection.py,
the Redis protocol in resp_dialect.py) builds them without importing the Connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import ErrorInfo, Request

__all__ = ["Close", "Event", "Reject"]


@dataclass(frozen=True, slots=True)
class Reject:
    """A request refused while parsing (e.g. an inline line with an unbalanced quote).

    Send `data` in its turn; the connection goes on with the next request.
    """

    error: ErrorInfo
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Terminal: send `data` in its turn, then close. Nothing after it is handed out.

    `error` is the fatal error, or None for a close the client asked for (QUIT).
    """

    error: ErrorInfo | None
    data: bytes


Event = Request | Reject | Close
