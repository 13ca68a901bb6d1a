"""Start-up time of the `tre` command: what every CLI call (and every CLI test) pays first.

Runs ``python -m tre.cli.main --version`` (imports every command, parses, prints) and, for
scale, a bare ``python -c pass``, each N times in fresh processes, and prints the medians,
the ratio, and which heavy libraries the command imported (none of SQLAlchemy, Alembic and
pydicom should load for a command that only talks to the API; see tre/cli/admin.py).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cli_startup.py [--runs 15]

Measured on the 2-core dev machine under load (load average ~4.5, other work running),
2026-11-29, with ``python -X importtime``: importing the commands (`tre.cli.app`) took
1.2-1.4 s before the store imports moved into the admin commands, 0.55-0.6 s after; this
script then printed ``tre --version`` median 1272 ms, bare interpreter 77 ms (16.5x), no
heavy library imported (a quiet machine is about twice as fast).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("sqlalchemy", "alembic", "pydicom", "numpy", "numba")


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    tre = [sys.executable, "-m", "tre.cli.main", "--version"]
    bare = [sys.executable, "-c", "pass"]
    tre_s = statistics.median(wall(tre) for _ in range(args.runs))
    bare_s = statistics.median(wall(bare) for _ in range(args.runs))
    probe = f"import sys, tre.cli.app; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    print(f"tre --version: median {tre_s * 1000:.0f} ms over {args.runs} runs")
    print(f"python -c pass: median {bare_s * 1000:.0f} ms")
    print(f"ratio tre / bare interpreter: {tre_s / bare_s:.1f}x")
    print(f"heavy libraries imported by the commands: {loaded.stdout.strip() or 'none'}")


if __name__ == "__main__":
    main()
