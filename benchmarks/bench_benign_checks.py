"""Pipeline cost of the egress checks on the benign research outputs (leaks11, leaks12).

Runs `run_checks` (default policy, OCR off, as the planted-leak tests do) over the benign
corpora of rounds 5 to 18 (`tests/egress/planted_round*.py`; ``--released``: with round 9's
earlier release, so that release differencing runs) against the planted
dataset's identifiers, a few times, and prints the CPU seconds of the best pass and every
finding (each one a false alarm unless the corpus names it as flagged by design). A
benchmark, not a test: run by hand, interleaved before/after a change.

    PYTHONPATH=. python benchmarks/bench_benign_checks.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from tests.egress import planted_round5, planted_round6
from tests.egress.planted_corpus import build_dataset, check_context, run_planted
from tre.policy import load_policy

POLICIES = Path(__file__).resolve().parents[1] / "policies"


def corpus() -> list[tuple[str, object, tuple[str, ...]]]:
    rounds = [("r5", planted_round5), ("r6", planted_round6)]
    try:
        from tests.egress import planted_round7

        rounds.append(("r7", planted_round7))
        from tests.egress import planted_round8

        rounds.append(("r8", planted_round8))
        from tests.egress import planted_round9, planted_round10

        rounds += [("r9", planted_round9), ("r10", planted_round10)]
        from tests.egress import planted_round10b

        rounds.append(("r10b", planted_round10b))
        from tests.egress import planted_round11

        rounds.append(("r11", planted_round11))
        from tests.egress import planted_round12

        rounds.append(("r12", planted_round12))
        from tests.egress import planted_round13

        rounds.append(("r13", planted_round13))
        from tests.egress import planted_round14

        rounds.append(("r14", planted_round14))
        from tests.egress import planted_round15

        rounds.append(("r15", planted_round15))
        from tests.egress import planted_round16

        rounds.append(("r16", planted_round16))
        from tests.egress import planted_round17

        rounds.append(("r17", planted_round17))
        from tests.egress import planted_round18

        rounds.append(("r18", planted_round18))
    except ImportError:  # measuring the code before a round
        pass
    return [(tag, p, by) for tag, mod in rounds for p, by in mod.benign()]  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", default="r5,r6,r7,r8", help="which rounds' benign outputs")
    parser.add_argument(
        "--released", action="store_true", help="against round 9's earlier release (differencing runs)"
    )
    args = parser.parse_args()
    base = load_policy("default", POLICIES)
    policy = base.model_copy(update={"image": base.image.model_copy(update={"ocr": False})})
    wanted = set(args.rounds.split(","))
    items = [(tag, p, by) for tag, p, by in corpus() if tag in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "out").mkdir()
        context = check_context(build_dataset(root / "dataset"), policy)
        if args.released:  # the project's earlier release, so release differencing runs too
            from tests.egress import planted_round9

            (root / "earlier").mkdir()
            context = dataclasses.replace(context, released=planted_round9.released(root / "earlier", policy))
        best = float("inf")
        alarms: list[str] = []
        for _ in range(args.repeat):
            alarms = []
            start = time.process_time()
            for tag, planted, by_design in items:
                fired = [
                    r.check
                    for r in run_planted(root / "out", planted, policy, context)
                    if r.outcome != "pass"
                ]  # type: ignore[arg-type]
                alarms += [f"{tag}/{planted.name}: {f}" for f in fired if f not in by_design]  # type: ignore[attr-defined]
            best = min(best, time.process_time() - start)
    print(
        f"{len(items)} benign outputs: best of {args.repeat} passes {best:.2f} CPU-s; "
        f"false alarms {len(alarms)}"
    )
    for alarm in alarms:
        print("  ", alarm)


if __name__ == "__main__":
    main()
