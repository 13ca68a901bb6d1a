"""Model-release review: trained models are reviewed as models, not refused as unknown bytes.

Models leave a TRE more and more often, and a model can carry its training data out
(memorised records, or data hidden as weights). In the spirit of SACRO-ML (AI-SDC), the
checks here are structural and need no execution: what format, how many parameters against
how many training records, leaf sizes of tree models, and, for pickles, which callables
loading it would run (a pickle that imports ``os.system`` is refused outright). The result is
a report the reviewers see, and the file is always routed to them (``models.action``).
A membership-inference attack needs the training data and the model loaded: not done here.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from egress_review.checks.detect import Detected
from egress_review.checks.model import CheckContext, CheckResult, action_outcome
from egress_review.checks.pickles import scan_pickle, unsafe_imports
from tre.policy import Policy

LEAF_KEYS = ("min_samples_leaf", "min_child_samples", "min_data_in_leaf", "min_child_weight")
RECORD_KEYS = ("n_samples", "n_samples_fit_", "n_training_samples", "training_records", "num_samples")


def _report_pickle(data: bytes, policy: Policy, report: dict[str, Any]) -> list[CheckResult]:
    scan = scan_pickle(data)
    report["pickle_protocol"] = scan.protocol
    report["pickle_opcodes"] = scan.opcodes
    bad = unsafe_imports(scan.imports, policy.models.allowed_pickle_globals)
    report["imports"] = sorted(set(scan.imports))[:30]
    # key followed by a number: hyper-parameters such as min_samples_leaf in a pickled estimator
    params = {k: v for k, v in scan.keyed.items() if k in (*LEAF_KEYS, *RECORD_KEYS)}
    report["strings"] = len(scan.strings)
    report.setdefault("hyperparameters", {}).update(params)
    out: list[CheckResult] = []
    if not scan.ok:
        out.append(
            CheckResult(
                check="model:pickle",
                outcome="block",
                reason="the pickle stream is malformed, so what loading it would run cannot be verified",
                evidence={"error": scan.error},
            )
        )
    if bad:
        out.append(
            CheckResult(
                check="model:pickle",
                outcome=action_outcome(policy.models.unsafe_pickle),
                reason=f"loading this pickle would import and call {len(bad)} callable(s) outside the "
                "allowlist (e.g. " + ", ".join(bad[:3]) + "): it can run code on the recipient's machine",
                evidence={"imports": bad[:20], "allowed": policy.models.allowed_pickle_globals},
            )
        )
    return out


def _torch(path: Path, policy: Policy, report: dict[str, Any]) -> list[CheckResult]:
    out: list[CheckResult] = []
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        pickles = [i for i in infos if i.filename.endswith(".pkl")]
        storage = sum(i.file_size for i in infos if "/data/" in i.filename)
        report["storage_bytes"] = storage
        report["parameters_estimate"] = storage // 4
        for info in pickles[:5]:
            out.extend(_report_pickle(zf.read(info), policy, report))
    return out


def _safetensors(path: Path, report: dict[str, Any]) -> None:
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        meta = json.loads(fh.read(n))
    tensors = {k: v for k, v in meta.items() if k != "__metadata__" and isinstance(v, dict)}
    report["tensors"] = len(tensors)
    report["parameters"] = int(sum(np.prod(v.get("shape") or [1]) for v in tensors.values()))
    report["dtypes"] = sorted({str(v.get("dtype")) for v in tensors.values()})
    report["largest_shape"] = max(
        (v.get("shape") or [] for v in tensors.values()), key=lambda s: np.prod(s or [1]), default=[]
    )


def _npz(path: Path, report: dict[str, Any]) -> None:
    arrays = np.load(path, allow_pickle=False)
    try:
        files = arrays.files if hasattr(arrays, "files") else ["array"]
        shapes = [arrays[f].shape for f in files] if hasattr(arrays, "files") else [arrays.shape]
    finally:
        if hasattr(arrays, "close"):
            arrays.close()
    report["tensors"] = len(files)
    report["parameters"] = int(sum(int(np.prod(s)) for s in shapes))
    report["largest_shape"] = list(max(shapes, key=lambda s: int(np.prod(s)), default=()))


def json_weights(doc: Any, min_weights: int) -> dict[str, Any] | None:
    """Numbers held in numeric arrays of a JSON document, when there are enough to be weights."""
    count = 0
    arrays = 0
    keys: dict[str, float] = {}

    def walk(node: Any, depth: int) -> None:
        nonlocal count, arrays
        if depth > 12:
            return
        if isinstance(node, list):
            nums = sum(1 for x in node if isinstance(x, int | float) and not isinstance(x, bool))
            if nums and nums == len(node):
                count += nums
                arrays += 1
            else:
                for x in node:
                    walk(x, depth + 1)
        elif isinstance(node, dict):
            for k, v in node.items():
                if k in (*LEAF_KEYS, *RECORD_KEYS) and isinstance(v, int | float):
                    keys[k] = float(v)
                walk(v, depth + 1)

    walk(doc, 0)
    if count < min_weights:
        return None
    return {"format": "JSON weight arrays", "parameters": count, "arrays": arrays, "hyperparameters": keys}


def structural_results(report: dict[str, Any], policy: Policy, context: CheckContext) -> list[CheckResult]:
    """SACRO-ML's structural rules on what the report could establish, and the review itself."""
    rules = policy.models
    out: list[CheckResult] = []
    hyper = report.get("hyperparameters", {})
    leaf = next((hyper[k] for k in LEAF_KEYS if k in hyper), None)
    if leaf is not None and leaf < rules.min_samples_leaf:
        out.append(
            CheckResult(
                check="model:structure",
                outcome=action_outcome(rules.structural),
                reason=f"leaves may hold {leaf:g} training sample(s), fewer than {rules.min_samples_leaf}: "
                "a tree with tiny leaves reproduces individual records (SACRO-ML structural rule)",
                evidence={"min_samples_leaf": leaf},
            )
        )
    params = report.get("parameters", report.get("parameters_estimate"))
    records = next((hyper[k] for k in RECORD_KEYS if k in hyper), None) or context.training_records
    if params is not None and records:
        ratio = float(params) / float(records)
        report["parameters_per_record"] = round(ratio, 3)
        if ratio > rules.max_parameters_per_record:
            out.append(
                CheckResult(
                    check="model:structure",
                    outcome=action_outcome(rules.structural),
                    reason=f"{int(params)} parameters for {int(records)} training records "
                    f"({ratio:.1f} per record, limit {rules.max_parameters_per_record:g}): "
                    "enough capacity to "
                    "memorise the training data (SACRO-ML structural rule)",
                    evidence={"parameters": params, "records": records},
                )
            )
    out.append(
        CheckResult(
            check="model:release_review",
            outcome=action_outcome(rules.action),
            reason=f"{report.get('format', 'model')} with "
            + (f"{int(params)} parameters" if params is not None else "an unknown number of parameters")
            + ": routed to model-release review; reviewers see the structural report"
            + ("" if records else " (training record count unknown, so capacity could not be judged)"),
            evidence={"report": report},
        )
    )
    return out


def check_model(path: Path, detected: Detected, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """Format-specific inspection, pickle safety and the structural report of one model file."""
    report: dict[str, Any] = {"format": detected.detail}
    out: list[CheckResult] = []
    detail = detected.detail.lower()
    try:
        if "pickle" in detail:
            out.extend(_report_pickle(path.read_bytes(), policy, report))
        elif "pytorch" in detail:
            out.extend(_torch(path, policy, report))
        elif "safetensors" in detail:
            _safetensors(path, report)
        elif "numpy" in detail:
            _npz(path, report)
    except (OSError, ValueError, KeyError, struct.error, zipfile.BadZipFile, EOFError) as exc:
        out.append(
            CheckResult(
                check="model:format",
                outcome="block",
                reason=f"{detected.detail} could not be inspected, so it cannot be reviewed as a model",
                evidence={"error": str(exc)[:200]},
            )
        )
    return out + structural_results(report, policy, context)
