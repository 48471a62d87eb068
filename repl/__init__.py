"""repl: bitcask-shell and the bitcask command line."""
