"""server: bitcask-server, the asyncio service that owns a store.

    from server import Server, ServerConfig
    server = Server(ServerConfig(data=Path("./data"), port=7379, http_port=7380))
    await server.start(); ...; await server.stop()

The console script `bitcask-server` (and `python -m server`) is `server.cli:main`.
"""

from __future__ import annotations

from .app import Server
from .config import ConfigError, ServerConfig

__all__ = ["ConfigError", "Server", "ServerConfig"]
