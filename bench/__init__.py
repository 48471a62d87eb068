"""Benchmarks: `python -m bench` (all), `python -m bench.embedded`, ... See bench/_util.py."""
