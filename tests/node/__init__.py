"""Node clients (ioredis from npm) against a real bitcask-server."""
