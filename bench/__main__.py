"""`make bench`: every benchmark, one after another in one run, then the report.

Each benchmark is its own module (`python -m bench.embedded`, `bench.server`,
`bench.redis`, `bench.client`, `bench.sharding`, `bench.cli`, `bench.backup`) run in a
child process so that one cannot warm or starve the next; each writes bench/results/<name>.json and <name>.md. `bench.report` then
assembles docs/benchmarks.md and its plots from those files.

    python -m bench                # all of them
    python -m bench embedded       # only some
    python -m bench --quick        # small sizes (a smoke run, not a measurement)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

SUITES = ("embedded", "server", "redis", "client", "sharding", "cli", "backup")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes; for a smoke run")
    parser.add_argument("--no-report", action="store_true", help="skip docs/benchmarks.md")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    failed: list[str] = []
    for name in args.suites or SUITES:
        cmd = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])]
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.call(cmd)
        print(
            f"=== bench.{name}: exit {code} in {time.monotonic() - started:.0f} s ===", flush=True
        )
        if code != 0:
            failed.append(name)
    if not args.no_report:
        subprocess.call([sys.executable, "-m", "bench.report"])
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
