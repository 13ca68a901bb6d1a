"""How many lines of ordinary logs the log screen withholds (false alarms), per corpus.

The digit-chain rules trade planted spellings caught against benign lines withheld; this
counts the second over the benchmark's ordinary training log (`bench_log_screen.ordinary`),
round 21's numbers as imaging code prints them (`numeric_reprs`), rounds 17-18's benign
corpora and the follower test's running logs, with three identifier sets: the benchmark's
(``--identifiers`` per kind, 3 + 3 N in all), every pydicom test file's, and 2,000 random
seven-digit MRNs with leading zeros (round 21: what a number's value costs).

    PYTHONPATH=. .venv/bin/python benchmarks/log_benign_withholds.py
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from benchmarks.bench_log_screen import ordinary
from egress_review.logscreen import LogScreen
from tests.security import test_log_false_alarms_round17 as round17
from tests.security import test_log_follower_lag as lag
from tests.security import test_log_residuals_round18 as round18
from tre.policy import load_policy


def numeric_reprs() -> list[str]:
    """Lines of numbers as imaging code prints them (round 21, for the number readings of
    `egress_review.number_forms`): tensor shapes, boxes and crops on 2048-4096 pixel images,
    confusion matrices, numpy arrays of counts, run dates, floats in ``%e``; seeded."""
    r = random.Random(21)
    out = []
    for i in range(120):
        x, y = r.randrange(3000), r.randrange(4000)
        out += [
            f"batch {i} torch.Size([{r.choice([8, 16, 32])}, 1, {r.choice([256, 512, 2048])}, "
            f"{r.choice([256, 512, 2560])}])",
            f"lesion bbox [{x}, {y}, {x + r.randrange(5, 300)}, {y + r.randrange(5, 300)}] "
            f"score {r.random():.3f}",
            f"confusion [[{r.randrange(5000)} {r.randrange(500)}] [{r.randrange(500)} {r.randrange(5000)}]]",
            f"crop origin ({r.randrange(2048)}, {r.randrange(2048)}) size ({r.randrange(64, 1024)}, "
            f"{r.randrange(64, 1024)})",
            "counts [" + " ".join(str(r.randrange(20000)) for _ in range(8)) + "]",
            f"run date datetime.date(20{r.randrange(18, 27)}, {r.randrange(1, 13)}, {r.randrange(1, 29)}) "
            f"step {r.randrange(100000)}",
            f"epoch {i} lr {r.random() * 1e-3:e} loss {r.random():e} grad {r.random() * 1e4:e}",
            f"voxels {r.randrange(10**6, 10**8)} sum {r.randrange(10**7)} hu range "
            f"({-r.randrange(1024)}, {r.randrange(3072)})",
        ]
    return out


def corpora() -> dict[str, list[str]]:
    found = {"benchmark ordinary log": ordinary().decode().splitlines()}
    found["numeric reprs"] = numeric_reprs()
    found.update({f"round 18: {k}": v for k, v in round18.BENIGN.items()})
    found.update({f"round 17: {k}": v for k, v in round17.BENIGN.items()})
    found["model summary"] = round18.MODEL_SUMMARY
    found.update({f"running: {k}": v for k, v in lag.RUNNING_LOGS.items()})
    return found


def identifier_sets(n: int) -> dict[str, set[str]]:
    bench = (
        {"CompressedSamples^CT1", "CompressedSamples", "CT1"}
        | {f"1.2.840.113619.2.55.3.{i}.{i * 7}" for i in range(n)}
        | {f"PAT{i:07d}" for i in range(n)}
        | {f"19{i % 100:02d}{i % 12 + 1:02d}{i % 28 + 1:02d}" for i in range(n)}
    )
    r = random.Random(7)  # MRNs of seven digits, five or six besides their leading zeros
    mrns = {f"{r.randrange(10**4, 10**6):07d}" for _ in range(2000)}
    return {
        "benchmark": bench,
        "every test file": set(round17._every_test_file_identifier()),
        "2,000 random MRNs": mrns,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identifiers", type=int, default=201)
    parser.add_argument("--show", action="store_true", help="print the withheld lines")
    args = parser.parse_args()
    policy = load_policy("default", Path(__file__).resolve().parents[1] / "policies")
    logs = corpora()
    total_lines = sum(len(v) for v in logs.values())
    for which, idents in identifier_sets(args.identifiers).items():
        screen = LogScreen.for_policies([policy], idents)
        withheld = 0
        for name, lines in logs.items():
            screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=True)
            hits = [(n, lines[n]) for n, x in enumerate(screening.lines) if x.withheld]
            withheld += len(hits)
            if hits:
                print(f"  {which} / {name}: {len(hits)} of {len(lines)}")
                for n, line in hits[: 8 if args.show else 0]:
                    print(f"      {n}: {line[:110]}")
        print(f"{which} ({len(idents)} identifiers): {withheld} of {total_lines} benign lines withheld")


if __name__ == "__main__":
    main()
