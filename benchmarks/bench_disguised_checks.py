"""Cost of the round-4 output checks (redteam8): the disguise search on output text, and the
picture test on numbers in text, against the plain identifier search.

Prints CPU seconds per MiB for a numeric CSV, a training log and prose, with and without the
disguise search, and their ratio. A benchmark, not a test: run by hand.

    PYTHONPATH=. python benchmarks/bench_disguised_checks.py [--mib 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from egress_review.checks import CheckContext, gather_identifiers
from egress_review.checks import text as text_checks
from egress_review.checks.numbers import check_number_text
from tests.egress.planted_corpus import build_dataset
from tre.policy import load_policy


def samples(mib: float) -> dict[str, str]:
    rng = np.random.default_rng(1)
    target = int(mib * 1024 * 1024)
    csv, log, prose = ["a,b,c\n"], [], []
    while sum(map(len, csv)) < target:
        csv.append(f"{len(csv)},{rng.normal():.5f},site{len(csv) % 7}\n")
    while sum(map(len, log)) < target:
        i = len(log)
        log.append(f"2021-05-0{i % 9 + 1} 10:00:{i % 60:02d} epoch {i} loss {rng.random():.4f}\n")
    words = ["the", "model", "reached", "an", "AUC", "of", "on", "held-out", "scans", "with", "lesions"]
    while sum(map(len, prose)) < target:
        prose.append(" ".join(rng.choice(words, 12)) + ".\n")
    return {"numeric CSV": "".join(csv), "training log": "".join(log), "prose": "".join(prose)}


def cpu(fn: object, *args: object) -> float:
    t0 = time.process_time()
    fn(*args)  # type: ignore[operator]
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=float, default=1.0)
    args = ap.parse_args()
    policy = load_policy("default", Path(__file__).resolve().parents[1] / "policies")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = build_dataset(Path(tmp) / "ds")
        ids = gather_identifiers(dataset, identifier_columns=policy.text.identifier_columns)
    ctx = CheckContext(identifiers=ids)
    head = ("text", "MiB", "plain s/MiB", "+disguise s/MiB", "ratio", "numbers s/MiB")
    print(f"{head[0]:14} {head[1]:>5} {head[2]:>12} {head[3]:>16} {head[4]:>6} {head[5]:>14}")
    for name, text in samples(args.mib).items():
        mib = len(text) / 2**20
        saved = text_checks.MAX_DISGUISED_CHARS
        text_checks.MAX_DISGUISED_CHARS = 0  # plain search only (the long-text flag path)
        plain = cpu(text_checks.check_identifiers, text, policy, ctx)
        text_checks.MAX_DISGUISED_CHARS = saved
        full = cpu(text_checks.check_identifiers, text, policy, ctx)
        numbers = cpu(check_number_text, text, policy)
        print(
            f"{name:14} {mib:5.2f} {plain / mib:12.2f} {full / mib:16.2f} {full / max(plain, 1e-9):6.1f} "
            f"{numbers / mib:14.2f}"
        )


if __name__ == "__main__":
    main()
