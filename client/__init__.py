"""client: the async client library for bitcask-server."""
