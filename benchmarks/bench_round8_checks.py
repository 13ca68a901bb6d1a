"""Cost of the round-8 readers (leaks12) on large honest outputs, through `run_checks`.

The round added a scan of every text's glued tokens (``site_A_had_3``, ``n3``), a CSV's
header and a JSON document's keys for counts, the bare-fraction, bracketed-count and
prose-total sentence patterns, and late epoch seconds in date columns. This runs the whole
pipeline (default policy, OCR off) over a training log with many ``key=value`` and
``name_3`` tokens, a numeric CSV with timestamps, and JSON Lines metrics, and prints the CPU
seconds per MiB (best of ``--repeat``) and any finding. Run it on the code before and after
(``PYTHONPATH=<old checkout>:.``) to compare. A benchmark, not a test.

    PYTHONPATH=. python benchmarks/bench_round8_checks.py [--mib 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from egress_review.checks import CheckContext, run_checks
from tre.policy import load_policy

POLICIES = Path(__file__).resolve().parents[1] / "policies"


def samples(mib: float) -> dict[str, str]:
    rng = np.random.default_rng(8)
    target = int(mib * 1024 * 1024)
    log, csv, jsonl = [], ["run_id,started,epoch,loss,val_dice,lr,block_3_out\n"], []
    size = [0, 0, 0]
    i = 0
    start = 1796040000
    while min(size) < target:
        e = i % 200
        line = (
            f"{start + 37 * i} [train] epoch={e} step={i} layer_3 block_2a conv_5x5 resnet50 "
            f"loss={rng.random():.4f} val_dice={rng.random():.4f} fold_{i % 5} ckpt_e{e}.pt "
            f"| {i % 120}/120 [00:{i % 60:02d}<00:40]\n"
        )
        row = f"r{i},{start + 60 * i},{e},{rng.random():.5f},{rng.random():.4f},"
        row += f"{1e-3 * rng.random():.6f},{i % 7}\n"
        rec = json.dumps({"epoch": e, "step": i, "loss": round(float(rng.random()), 4), "n_gpus": 4}) + "\n"
        for k, (buf, text) in enumerate(((log, line), (csv, row), (jsonl, rec))):
            if size[k] < target:
                buf.append(text)
                size[k] += len(text)
        i += 1
    return {"train.log": "".join(log), "metrics.csv": "".join(csv), "metrics.ndjson": "".join(jsonl)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = load_policy("default", POLICIES)
    policy = base.model_copy(update={"image": base.image.model_copy(update={"ocr": False})})
    context = CheckContext(identifiers={"DOE^JANE", "HOSP-77-1234", "19620315"}, file_count=1, total_size=0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in samples(args.mib).items():
            path = Path(tmp) / name
            path.write_text(text)
            best = float("inf")
            findings: list[str] = []
            for _ in range(args.repeat):
                t0 = time.process_time()
                results = run_checks(path, name, policy, context)
                best = min(best, time.process_time() - t0)
                findings = [f"{r.check}:{r.outcome}" for r in results if r.outcome != "pass"]
            mib = len(text.encode()) / 2**20
            print(f"{name}: {mib:.1f} MiB, {best / mib:.3f} CPU-s/MiB; findings {findings}")


if __name__ == "__main__":
    main()
