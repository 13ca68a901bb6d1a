"""Model-release review: trained models are reviewed as models, not refused as unknown bytes.

Models leave a TRE more and more often, and a model can carry its training data out
(memorised records, or data hidden as weights). In the spirit of SACRO-ML (AI-SDC), the
checks here are structural and need no execution: what format, how many parameters against
how many training records, leaf sizes of tree models, and, for pickles, which callables
loading it would run (a pickle that imports ``os.system`` is refused outright). The result is
a report the reviewers see, and the file is always routed to them (``models.action``).
ONNX models are parsed (`checks.onnx_model`), their job-written text screened, tree
ensembles bounded by leaf counts, and, when a model card names the training and held-out
records inside the TRE, a membership-inference attack is run on the model's predictions,
computed in the sandbox (`checks.membership`, `egress_review.model_sandbox`).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from egress_review.checks.detect import Detected
from egress_review.checks.images import input_match
from egress_review.checks.membership import membership_attack
from egress_review.checks.model import (
    CheckContext,
    CheckResult,
    OnnxRefused,
    SandboxUnavailable,
    action_outcome,
)
from egress_review.checks.model_card import CardError, find_card, parse_card, read_records
from egress_review.checks.model_content import model_content
from egress_review.checks.pickles import scan_pickle, unsafe_imports
from egress_review.checks.text import check_identifiers, check_patterns
from tre.plural import count
from tre.policy import Policy

if TYPE_CHECKING:
    from egress_review.checks.onnx_model import OnnxReport

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
                reason=f"loading this pickle would import and call {count(len(bad), 'callable')} outside the "
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


MAX_COUNT_ARRAY = 10_000


def named_array_counts(path: Path, policy: Policy, display_name: str = "") -> list[CheckResult]:
    """Counts saved as arrays under a count's name (leaks11): ``np.savez(counts=...,
    bin_edges=...)`` (a histogram) or a structured array's ``n`` field were weights to the
    model review only. A 1-D integer array (or field) whose name is a count is read as a
    one-column table of that name and gets the SDC rules. A plain ``.npy`` is named by its
    file (leaks12: ``np.save("histogram.npy", counts)`` passed unread)."""
    from egress_review.checks.tables import check_rows

    loaded = np.load(path, allow_pickle=False)
    named: list[tuple[str, np.ndarray]] = []
    try:
        if hasattr(loaded, "files"):
            for member in loaded.files[:100]:
                arr = loaded[member]
                if arr.dtype.names:
                    named += [(f"{member}.{f}", arr[f]) for f in arr.dtype.names]
                else:
                    named.append((member, arr))
        elif loaded.dtype.names:
            named += [(f, loaded[f]) for f in loaded.dtype.names]
        elif display_name:
            stem = Path(display_name).name.split(".", 1)[0]
            named.append((stem, loaded))
    finally:
        if hasattr(loaded, "close"):
            loaded.close()
    out: list[CheckResult] = []
    for name, arr in named:
        if arr.ndim != 1 or arr.size > MAX_COUNT_ARRAY or arr.dtype.kind not in "iu":
            continue
        short = name.rsplit(".", 1)[-1]
        rows = [[short], *([str(int(v))] for v in arr)]
        out.extend(r for r in check_rows(rows, policy, f"array {name!r}") if r.outcome != "pass")
    return out


def npy_trailing(path: Path, policy: Policy) -> list[CheckResult]:
    """Bytes after a ``.npy`` array's data (leaks10): ``np.load`` stops at the array's end, so
    anything appended there is invisible to every reader, like bytes after a PNG's IEND."""
    with path.open("rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            return []  # an .npz is a zip: its members are read as arrays
        fh.seek(0)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            return []  # format 3.0 (UTF-8 field names) is rare; its size rules still apply
        end = fh.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if dtype.hasobject or size <= end:
        return []
    return [
        CheckResult(
            check="trailing_data",
            outcome=action_outcome(policy.files.trailing_data),
            reason=f"{size - end} bytes follow the end of the NumPy array's data (offset {end}); "
            "array readers ignore them, so they can carry hidden content",
            evidence={"offset": end, "bytes": size - end},
        )
    ]


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
                reason=f"leaves may hold {leaf:g} training "
                f"{'sample' if leaf == 1 else 'samples'}, fewer than {rules.min_samples_leaf}: "
                "a tree with tiny leaves reproduces individual records (SACRO-ML structural rule)",
                evidence={"min_samples_leaf": leaf},
            )
        )
    params = report.get("parameters", report.get("parameters_estimate"))
    records = (
        report.get("training_records")
        or next((hyper[k] for k in RECORD_KEYS if k in hyper), None)
        or context.training_records
    )
    out.extend(_leaf_rules(report, records, rules.min_samples_leaf, rules.structural))
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


def _leaf_rules(
    report: dict[str, Any], records: float | None, minimum: int, action: str
) -> list[CheckResult]:
    """Tree ensembles read from the model itself: leaves holding whole counts give the smallest
    leaf directly; otherwise training records over leaves bounds it (if the average leaf holds
    fewer than the minimum, some leaf does)."""
    trees = report.get("tree_ensembles") or []
    out: list[CheckResult] = []
    if "min_leaf_records" in report:
        smallest, under = report["min_leaf_records"], report["leaves_under_minimum"]
        if smallest < minimum:
            out.append(
                CheckResult(
                    check="model:structure",
                    outcome=action_outcome(action),
                    reason=f"routing the {int(records or 0)} training records through the trees (their split "
                    f"attributes, read as data) leaves {count(smallest, 'record')} in the "
                    f"smallest leaf and fewer "
                    f"than {minimum} in {under} leaves: such leaves describe individual records "
                    "(SACRO-ML structural rule, minimum samples per leaf)",
                    evidence={
                        "min_leaf_records": smallest,
                        "leaves_under_minimum": under,
                        "min_samples_leaf": minimum,
                    },
                )
            )
        return out
    counted = [t["min_leaf_samples"] for t in trees if "min_leaf_samples" in t]
    if counted and min(counted) < minimum:
        out.append(
            CheckResult(
                check="model:structure",
                outcome=action_outcome(action),
                reason=f"a leaf of the tree ensemble holds {min(counted):g} training "
                f"{'sample' if min(counted) == 1 else 'samples'} (its leaf "
                f"weights are counts), fewer than {minimum}: such a leaf describes individual records "
                "(SACRO-ML structural rule)",
                evidence={"min_leaf_samples": min(counted)},
            )
        )
        return out
    leaves = int(report.get("leaves") or 0)
    if leaves and records:
        per_leaf = float(records) / leaves
        report["records_per_leaf"] = round(per_leaf, 2)
        if per_leaf < minimum:
            out.append(
                CheckResult(
                    check="model:structure",
                    outcome=action_outcome(action),
                    reason=f"{leaves} leaves for {int(records)} training records ({per_leaf:.1f} per leaf on "
                    f"average), so some leaf holds fewer than {minimum} records: leaves that small "
                    "describe individual records (SACRO-ML structural rule, minimum samples per leaf)",
                    evidence={"leaves": leaves, "records": records, "min_samples_leaf": minimum},
                )
            )
    return out


def _onnx(
    parsed: OnnxReport, policy: Policy, context: CheckContext, report: dict[str, Any]
) -> list[CheckResult]:
    """The parsed graph into the report; screen the job-written text in it."""
    report.update(parsed.as_dict())
    out: list[CheckResult] = []
    hyper = {
        k: float(v) for k, v in parsed.metadata.items() if k in (*LEAF_KEYS, *RECORD_KEYS) and _number(v)
    }
    if hyper:
        report.setdefault("hyperparameters", {}).update(hyper)
    text = "\n".join(parsed.texts)
    found = check_identifiers(text, policy, context, check="model:identifiers")
    if found.outcome != "pass":
        out.append(
            found.model_copy(
                update={"reason": "in the ONNX model's metadata, names or doc strings: " + found.reason}
            )
        )
    out.extend(
        r.model_copy(update={"check": f"model:{r.check}", "reason": "in the ONNX model's text: " + r.reason})
        for r in check_patterns(text, policy)
    )
    if parsed.metadata:
        shown = dict(list(parsed.metadata.items())[:30])
        out.append(
            CheckResult(
                check="model:metadata",
                outcome=action_outcome(policy.models.metadata),
                reason=f"the model carries {len(parsed.metadata)} metadata entr"
                f"{'y' if len(parsed.metadata) == 1 else 'ies'} (metadata_props) written by the job; "
                "the keys and values are shown to reviewers",
                evidence={"entries": len(parsed.metadata), "reviewer_only": {"metadata_props": shown}},
            )
        )
    if parsed.custom_domains:
        out.append(
            CheckResult(
                check="model:operators",
                outcome=action_outcome(policy.models.custom_operators),
                reason=f"{count(len(parsed.custom_domains), 'operator')} from domains outside the "
                f"ONNX standard: "
                "what they compute is defined by code that is not part of the model file",
                evidence={"reviewer_only": {"domains": sorted(set(parsed.custom_domains))[:20]}},
            )
        )
    return out


def _number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _membership(
    path: Path,
    model_name: str,
    parsed: OnnxReport,
    policy: Policy,
    context: CheckContext,
    report: dict[str, Any],
) -> list[CheckResult]:
    """The worst-case membership-inference attack, when a model card says where the records are."""
    rules = policy.models

    def not_run(reason: str, detail: str = "") -> list[CheckResult]:
        report["membership_inference"] = "not run"
        evidence: dict[str, Any] = {"reviewer_only": {"detail": detail}} if detail else {}
        return [
            CheckResult(
                check="model:membership",
                outcome=action_outcome(rules.mi_unavailable),
                reason="membership-inference test not run: " + reason,
                evidence=evidence,
            )
        ]

    found = find_card(model_name, context)
    if found is None:
        return not_run(
            "no model card among the job's outputs names this model's training and held-out records "
            "(model-card.json; see docs/egress-checks.md)"
        )
    card_name, raw = found
    try:
        card = parse_card(card_name, raw, model_name)
        train = read_records(card.training_data, card, context, max_rows=1_000_000)
        holdout = read_records(card.holdout_data, card, context, max_rows=1_000_000)
    except CardError as exc:
        return not_run(exc.reason, exc.detail)
    report["training_records"] = len(train.labels)
    report["holdout_records"] = len(holdout.labels)
    from egress_review.checks.onnx_model import leaf_occupancy

    occupied = [c for t in parsed.trees if (c := leaf_occupancy(t, train.features)) is not None]
    if occupied:
        counts = np.concatenate(occupied)
        report["min_leaf_records"] = int(counts.min())
        report["leaves_under_minimum"] = int((counts < rules.min_samples_leaf).sum())
    if min(len(train.labels), len(holdout.labels)) < rules.mi_min_records:
        return not_run(f"fewer than {rules.mi_min_records} training or held-out records")
    if context.model_sandbox is None:
        return not_run("this server has no sandbox to run models in (the local sandbox needs root and bwrap)")
    try:
        predictions = context.model_sandbox.predict(
            path, {"training": train.features, "holdout": holdout.features}
        )
        attack = membership_attack(
            predictions["training"],
            train.labels,
            predictions["holdout"],
            holdout.labels,
            max_records=rules.mi_max_records,
        )
    except SandboxUnavailable as exc:
        return not_run(str(exc))
    except (KeyError, ValueError) as exc:
        return not_run("the predictions could not be used for the attack", str(exc)[:200])
    figures = attack.as_dict()
    report["membership_inference"] = figures
    fails = attack.auc > rules.mi_max_auc
    low = figures["tpr_at_fpr"]
    summary = (
        f"a membership-inference attack ({attack.attack}, SACRO-ML worst case) tells the "
        f"{attack.members} training records from {attack.nonmembers} held-out records with AUC "
        f"{attack.auc:.2f} (limit {rules.mi_max_auc:g}, p = {figures['p_value']:g}), membership advantage "
        f"{attack.advantage:.2f}, true-positive rate {low['0.01']:.0%} at 1% and {low['0.1']:.0%} at 10% "
        "false positives"
    )
    return [
        CheckResult(
            check="model:membership",
            outcome=action_outcome(rules.mi_action) if fails else "pass",
            reason=summary
            + (
                ": the model gives away which records it was trained on"
                if fails
                else ": no more than the policy tolerates"
            ),
            evidence={"attack": figures, "reviewer_only": {"model_card": card_name}},
        )
    ]


def _content_results(path: Path, detail: str, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """Identifiers in a model's text and input slices among its arrays (ONNX has its own)."""
    content = model_content(path, detail)
    out: list[CheckResult] = []
    found = check_identifiers("\n".join(content.texts), policy, context, check="model:identifiers")
    if found.outcome != "pass":
        out.append(
            found.model_copy(update={"reason": f"in the {detail}'s strings or metadata: " + found.reason})
        )
    rules = policy.image.volumes
    for arr in content.arrays:
        forms = [arr, np.moveaxis(arr, 0, -1)] if arr.ndim == 3 else [arr.reshape(-1, *arr.shape[-2:])[0]]
        matches = [m[0] for f in forms if (m := input_match(f, context, rules)) is not None]
        if matches:
            best = max(matches)
            out.append(
                CheckResult(
                    check="model:similar_to_input",
                    outcome=action_outcome(rules.similar_to_input),
                    reason=f"an array of the {detail} matches an input DICOM image of the dataset "
                    f"(correlation {best:.3f}, threshold {rules.similarity_threshold}): "
                    "the scan, not weights",
                    evidence={"correlation": round(best, 4), "shape": list(arr.shape)},
                )
            )
            break
    return out


def check_model(
    path: Path, detected: Detected, policy: Policy, context: CheckContext, display_name: str = ""
) -> list[CheckResult]:
    """Format-specific inspection, pickle safety and the structural report of one model file."""
    report: dict[str, Any] = {"format": detected.detail}
    out: list[CheckResult] = []
    detail = detected.detail.lower()
    try:
        if "onnx" in detail:
            # onnx is imported when an ONNX model is checked (~1.1 s at every start before)
            from egress_review.checks.onnx_model import inspect_onnx

            parsed = inspect_onnx(path.read_bytes())
            out.extend(_onnx(parsed, policy, context, report))
            if context.depth == 0:
                out.extend(_membership(path, display_name or path.name, parsed, policy, context, report))
        elif "pickle" in detail:
            out.extend(_report_pickle(path.read_bytes(), policy, report))
        elif "pytorch" in detail:
            out.extend(_torch(path, policy, report))
        elif "safetensors" in detail:
            _safetensors(path, report)
        elif "numpy" in detail:
            _npz(path, report)
            out.extend(npy_trailing(path, policy))
            out.extend(named_array_counts(path, policy, display_name))
        # ONNX text is screened by `_onnx`; its initializers are compared with the inputs here
        out.extend(_content_results(path, detected.detail, policy, context))
    except OnnxRefused as exc:
        out.append(
            CheckResult(
                check="model:format",
                outcome="block",
                reason=exc.reason,
                evidence={"reviewer_only": {"parser": exc.detail[:200]}} if exc.detail else {},
            )
        )
        return out
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
