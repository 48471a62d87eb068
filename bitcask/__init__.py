"""bitcask: a Bitcask-model key/value storage engine in pure Python."""
