"""Cost and chance findings of the counts-in-text reader (leaks10, `egress_review/checks/text_counts.py`).

Builds an honest ``key=value`` training log (epochs, steps, folds, losses, timestamps) and
honest prose (a methods section repeated), runs `check_text_counts` as the egress checks do,
and prints the CPU seconds per MiB read and any finding (each one a false alarm in an honest
text). Only the first 8 MiB of a text are read for counts. A benchmark, not a test: run by hand.

    PYTHONPATH=. python benchmarks/bench_text_counts.py [--lines 300000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from egress_review.checks.text_counts import MAX_CHARS, check_text_counts
from tre.policy import load_policy

POLICIES = Path(__file__).resolve().parents[1] / "policies"


def honest_log(lines: int) -> str:
    return "".join(
        f"2026-11-30 12:{i % 60:02d}:00,000 INFO epoch={i % 7} step={i} loss={1 / (i + 1):.5f} "
        f"val_dice=0.{i % 97:02d} lr=1.0e-04 fold=3 num_workers=4 n_val=120\n"
        for i in range(lines)
    )


def honest_prose(repeats: int) -> str:
    return (
        "We trained the model on 480 CT series (Table 2 patients characteristics). The median "
        "follow-up was 3 years; 5 folds of 96 patients were used, about 2 seconds per patient. "
    ) * repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=300_000)
    args = parser.parse_args()
    policy = load_policy("default", POLICIES)
    for name, text in (("key=value log", honest_log(args.lines)), ("prose", honest_prose(args.lines // 5))):
        read = min(len(text), MAX_CHARS) / 2**20
        start = time.process_time()
        results = check_text_counts(text, policy)
        cpu = time.process_time() - start
        print(f"{name}: {read:.1f} MiB read, {cpu:.2f} CPU-s ({cpu / read:.2f} per MiB), findings {results}")


if __name__ == "__main__":
    main()
