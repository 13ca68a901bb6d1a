"""The log screen at a real dataset's scale (round 14b): build time, peak memory and
judgement time per 256 KiB window for 1k, 10k and 100k identifiers of a realistic mix.

EUCAIM datasets hold thousands of patients and hundreds of thousands of UIDs. Each patient
here brings a DICOM person name, a patient ID, a birth date, a study date, an accession
number, a study UID and series/instance UIDs (ten identifiers a patient, two thirds of them
of the kinds that are not UIDs), as `identifiers_from_dataset` gathers them. Each size runs
in its own process so its peak RSS is its own.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_log_screen_scale.py --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SURNAMES = ["DOE", "GARCIA", "MULLER", "ROSSI", "DUBOIS", "NOWAK", "SILVA", "JANSEN", "NIELSEN", "KOVAC"]
GIVEN = ["JANE", "JOHN", "MARIA", "PIERRE", "ANNA", "LUCA", "SOFIA", "JAN", "ELENA", "MARC"]


def identifiers(count: int, seed: int = 14) -> set[str]:
    """``count`` identifiers of a realistic mix, ten a patient."""
    rng = random.Random(seed)
    out: set[str] = set()
    patient = 0
    while len(out) < count:
        patient += 1
        name = f"{rng.choice(SURNAMES)}{patient}^{rng.choice(GIVEN)}"
        study = f"1.2.826.0.1.3680043.8.498.{rng.randrange(10**20)}"
        found = [
            name,
            f"PAT{patient:07d}",
            f"19{rng.randrange(30, 99)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
            f"20{rng.randrange(10, 26)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
            f"ACC{rng.randrange(10**8):08d}",
            study,
            *(f"{study}.{s}" for s in range(1, 3)),
            *(f"{study}.1.{i}" for i in range(1, 3)),
        ]
        out.update(found[: count - len(out)])
    return out


def one(size: int, repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_log_screen import adversarial, ordinary

    from egress_review.logscreen import LogScreen
    from tre.policy import load_policy

    policy = load_policy("default", ROOT / "policies")
    idents = identifiers(size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.process_time()
    screen = LogScreen.for_policies([policy], idents)
    screen.screen_log(b"warm up\n", final=False)  # builds the lazy indexes (live waits)
    built = time.process_time() - t0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"{size:>7} identifiers: build CPU {built:.2f} s, peak RSS growth {peak:.0f} MiB")
    for name, log in (("ordinary", ordinary()), ("adversarial", adversarial())):
        for final in (True, False):
            times = []
            for _ in range(repeat):
                t0 = time.process_time()
                screen.screen_log(log, final=final)
                times.append(time.process_time() - t0)
            times.sort()
            print(
                f"{'':>7}   {name:12s} {'ended' if final else 'running':8s} 256 KiB: "
                f"CPU median {times[len(times) // 2] * 1000:.0f} ms"
            )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.repeat)
        return
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(size), "--repeat", str(args.repeat)]
        subprocess.run(cmd, check=False)


if __name__ == "__main__":
    main()
