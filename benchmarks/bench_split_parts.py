"""Cost and chance matches of the labelled-parts search (redteam9, `egress_review/split_parts.py`).

Builds a synthetic training and worker log (epochs, steps, learning rates, folds, case
numbers, timestamps) and 2,000 identifiers of the kinds a dataset gives (dates, MRNs, a
lettered hospital ID), runs the search the egress checks and the log screen run, and prints
the CPU seconds per MiB and the lines where a chain was found (each one a false alarm in an
honest log). A benchmark, not a test: run by hand.

    PYTHONPATH=. python benchmarks/bench_split_parts.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import random
import time

from egress_review.split_parts import SplitIndex


def honest_log(lines: int, rng: random.Random) -> str:
    out = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.4:
            out.append(
                f"epoch {rng.randint(1, 300)} step {rng.randint(1, 99999)} loss {rng.random():.4f} "
                f"lr {rng.choice(['1e-04', '3e-05', '1.0e-03'])} batch {rng.randint(1, 64)}"
            )
        elif kind < 0.7:
            out.append(
                f"fold {rng.randint(1, 5)} case {rng.randint(1, 999):03d} dice {rng.random():.3f} "
                f"voxels {rng.randint(100, 999999)} slices {rng.randint(10, 400)}"
            )
        else:
            out.append(
                f"{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} INFO worker {rng.randint(1, 16)} "
                f"processed {rng.randint(1, 5000)} series in {rng.random() * 100:.1f} s"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(1)
    identifiers = ["DOE^JANE", "HOSP-77-1234", "19620315", "20190412", "ACC558812", "MRN-0048213"]
    identifiers += [str(rng.randint(19000101, 20241231)) for _ in range(500)]
    identifiers += [f"MRN-{rng.randint(0, 9_999_999):07d}" for _ in range(1500)]
    text = honest_log(args.lines, rng)
    index = SplitIndex(identifiers)
    started = time.process_time()
    hits = index.lines_with(text)
    cpu = time.process_time() - started
    mib = len(text) / (1 << 20)
    planted = "MRN part 1: 0048\nnote\nMRN part 2: 213\n"
    print(f"{args.lines} lines, {mib:.1f} MiB, {len(identifiers)} identifiers")
    print(f"search: {cpu:.2f} CPU-s, {cpu / mib:.2f} CPU-s per MiB")
    print(f"chance matches in the honest log: {len(hits)}")
    print(f"planted parts found: {index.lines_with(planted) == [1]}")


if __name__ == "__main__":
    main()
