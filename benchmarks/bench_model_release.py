"""Cost of the model-release review (issue 10): ONNX parse, sandboxed predictions, attack,
and of the date parser on a long log.

Prints each stage's time and its ratio to a budget: a model review should take a few
seconds of a request's checks (budget 10 s), date parsing should not more than double the
identifier scan of a log (ratio to the scan without date identifiers).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_model_release.py        # as root, with bwrap
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.tree import DecisionTreeClassifier

from egress_review.checks.identifiers import matcher_for
from egress_review.checks.membership import membership_attack
from egress_review.checks.onnx_model import inspect_onnx
from egress_review.model_sandbox import BwrapModelSandbox
from tre.executors.local import LocalExecutor
from tre.policy import load_policy

BUDGET_S = 10.0


def timed(label: str, fn, budget: float):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    took = time.perf_counter() - start
    print(f"{label:<46} {took:8.3f} s   ratio to {budget:g} s budget: {took / budget:.3f}")
    return result


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 20))
    y = (x[:, 0] + rng.normal(size=4000) > 0).astype(int)
    model = DecisionTreeClassifier(min_samples_leaf=1, random_state=0).fit(x[:2000], y[:2000])
    data = to_onnx(model, x[:1].astype(np.float32)).SerializeToString()
    timed(f"inspect_onnx ({len(data) // 1024} KiB tree)", lambda: inspect_onnx(data), BUDGET_S)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        path.write_bytes(data)
        sandbox = BwrapModelSandbox(
            LocalExecutor(images_dir=Path(tmp) / "i", host_toolchain=True, expose_tre_package=False),
            Path(tmp),
        )
        sets = {"training": x[:2000], "holdout": x[2000:]}
        preds = timed(
            "sandboxed predictions, 2 x 2000 records", lambda: sandbox.predict(path, sets), BUDGET_S
        )
    labels = [str(v) for v in y]
    attack = timed(
        "membership attack (5-fold LR + threshold)",
        lambda: membership_attack(preds["training"], labels[:2000], preds["holdout"], labels[2000:]),
        BUDGET_S,
    )
    print(f"  attack AUC {attack.auc:.3f}, advantage {attack.advantage:.3f}")
    policy = load_policy("default", Path(__file__).resolve().parents[1] / "policies")
    log = "\n".join(
        f"2019-11-29 17:{i % 60:02d}:00 epoch {i // 1000} step {i} loss={rng.random():.5f} dice 0.8{i % 10}"
        for i in range(200_000)
    )
    plain = matcher_for(policy, {"DOE^JANE", "HOSP-77-1234", "MRN-0048213"})
    dated = matcher_for(policy, {"DOE^JANE", "HOSP-77-1234", "MRN-0048213", "19620315", "20190412"})
    base = time.perf_counter()
    plain.find(log)
    base = time.perf_counter() - base
    timed(f"identifier scan with dates, {len(log) / 1e6:.0f} MB log", lambda: dated.find(log), base * 2)


if __name__ == "__main__":
    main()
