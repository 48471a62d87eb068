"""protocol: the bitcask wire format, sans-IO (bytes in, messages out)."""
