"""How many lines of ordinary logs the log screen withholds (false alarms), per corpus.

The digit-chain rules trade planted spellings caught against benign lines withheld; this
counts the second over the benchmark's ordinary training log (`bench_log_screen.ordinary`),
rounds 17-18's benign corpora and the follower test's running logs, with two identifier sets:
the benchmark's (``--identifiers`` per kind, 3 + 3 N in all) and every pydicom test file's.

    PYTHONPATH=. .venv/bin/python benchmarks/log_benign_withholds.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.bench_log_screen import ordinary
from egress_review.logscreen import LogScreen
from tests.security import test_log_false_alarms_round17 as round17
from tests.security import test_log_follower_lag as lag
from tests.security import test_log_residuals_round18 as round18
from tre.policy import load_policy


def corpora() -> dict[str, list[str]]:
    found = {"benchmark ordinary log": ordinary().decode().splitlines()}
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
    return {"benchmark": bench, "every test file": set(round17._every_test_file_identifier())}


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
