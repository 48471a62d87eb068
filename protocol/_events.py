"""The events a server-side connection hands out (protocol/connection.py's Connection).

Strategy: their own module so that every dialect (binary in connection.py, the Redis
protocol in resp_dialect.py) builds them without importing the Connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import ErrorInfo, Request

__all__ = ["Close", "Event", "Reject"]


@dataclass(frozen=True, slots=True)
class Reject:
    """A request refused while parsing; the connection goes on.

    Send `data` in its turn, then go on with the next request. Part of the dialect
    interface; neither the binary nor the Redis dialect produces one today (their
    errors are a command's reply or a terminal `Close`).
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
