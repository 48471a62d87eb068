"""server: bitcask-server, the asyncio service that owns a store."""
