"""Glue between a request and the automated checks: which policies apply, and running them.

A job may read several datasets, each with its own policy. The request is checked under
*all* of them (every check of every policy runs on every file, each result tagged with the
policy that produced it), the worst outcome wins, and the number of reviews required is the
largest any policy asks for, never fewer than two. That is the strictest reading and the
only one that cannot let a file out under rules weaker than some dataset demands.

The checks run on the frozen staged copy, so what was checked is byte for byte what can be
released. A check that crashes blocks the file (fail closed) with the error as its reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from egress_review.checks import CheckContext, gather_identifiers, run_checks
from egress_review.checks.cohort import merge
from egress_review.checks.identifiers import dataset_patients
from egress_review.checks.model import ModelSandbox, worst
from tre.audit.registrations import require_registered
from tre.policy import AppliedPolicy
from tre.states import CheckOutcome
from tre.store.models import Dataset, Job

log = logging.getLogger(__name__)

MIN_REVIEWS = 2


def job_datasets(session: Session, job: Job) -> list[Dataset]:
    """The datasets whose policies govern the job's outputs and log: those it read at /data
    and those its input jobs' outputs derive from (its lineage, fixed at admission), so a
    volume passed through a second job never leaves under a looser policy than its source's."""
    ids = job.governing_dataset_ids
    if not ids:
        return []
    datasets = list(session.scalars(select(Dataset).where(Dataset.id.in_(ids)).order_by(Dataset.id)))
    # Checked and screened only under the folder and policy each was registered with.
    require_registered(session, datasets)
    return datasets


def required_reviews(applied: list[AppliedPolicy]) -> int:
    return max([MIN_REVIEWS, *(p.describe()["required_reviews"] for p in applied)])


def identifiers_for(datasets: list[Dataset], applied: list[AppliedPolicy] | None = None) -> set[str]:
    """The datasets' identifiers: DICOM headers, and the sidecar-table columns the policies name."""
    columns = sorted({c for ap in applied or [] for c in ap.policy.text.identifier_columns})
    found: set[str] = set()
    for d in datasets:
        try:
            found |= set(gather_identifiers(Path(d.path), identifier_columns=columns))
        except OSError as exc:
            # The dataset folder should be there; if not, checks run without its identifiers,
            # which can only make the identifier check weaker, so say so loudly in the log.
            log.warning("cannot gather identifiers of dataset %s: %s", d.id, exc)
    return found


def cohort_size(datasets: list[Dataset]) -> int | None:
    """The distinct patients of the datasets (`checks.identifiers.dataset_patients`), one
    person in two datasets (by an ID they share) once, or None when none was counted: the
    shares checks read a share with no whole beside it against it."""
    counted = []
    for d in datasets:
        try:
            counted.append(dataset_patients(Path(d.path)))
        except OSError as exc:
            log.warning("cannot count the patients of dataset %s: %s", d.id, exc)
    return len(merge(counted)) or None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# Reasons and evidence quote the file (column names, labels, metadata keys, parser errors),
# and the file was written by research code. Each result is stored with the request, shown
# to the requester and audited (egress.check), and the audit log can never shrink: without
# a bound, one CSV whose header was a long "count_..." name made every request naming it fail
# with a 500 (the audit entry passed the log's 64 KiB cap) after its files were staged, and
# the requester was shown whatever the reasons and evidence quoted, at any length.
MAX_REASON_CHARS = 1000
MAX_EVIDENCE_TEXT = 200
MAX_EVIDENCE_ITEMS = 50


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bounded(value: Any, depth: int = 0) -> Any:
    """JSON-ready evidence with every string, list and mapping cut to a fixed size."""
    if isinstance(value, str):
        return _clip(value, MAX_EVIDENCE_TEXT)
    if depth >= 6:
        return "…"
    if isinstance(value, list):
        return [bounded(v, depth + 1) for v in value[:MAX_EVIDENCE_ITEMS]]
    if isinstance(value, dict):
        items = list(value.items())[:MAX_EVIDENCE_ITEMS]
        return {_clip(str(k), MAX_EVIDENCE_TEXT): bounded(v, depth + 1) for k, v in items}
    return value


def worst_outcome(outcomes: list[str]) -> CheckOutcome:
    """The most severe of stored outcomes; anything unknown blocks (see checks.model.worst)."""
    return CheckOutcome(worst(outcomes))


def check_file(
    path: Path, display_name: str, applied: list[AppliedPolicy], context: CheckContext
) -> list[dict[str, Any]]:
    """All checks of all policies on one staged file, as JSON-ready dicts."""
    results: list[dict[str, Any]] = []
    for ap in applied:
        # Each result names the exact policy text (version and digest) it was judged under.
        d = ap.describe()
        tag = {"policy": ap.name, "policy_version": d["version"], "policy_digest": d["digest"]}
        try:
            raw = run_checks(path, display_name, ap.policy, context)
        except Exception as exc:  # noqa: BLE001 - a crashing check must block, never pass
            log.exception("checks crashed on %s", display_name)
            reason = _clip(f"the checks could not run on this file: {exc}", MAX_REASON_CHARS)
            results.append(
                {
                    **tag,
                    "check": "engine",
                    "outcome": CheckOutcome.block.value,
                    "reason": reason,
                    "evidence": {},
                }
            )
            continue
        for r in raw:
            outcome = str(getattr(r, "outcome", CheckOutcome.block.value))
            results.append(
                {
                    **tag,
                    "check": _clip(str(r.check), 64),
                    "outcome": outcome if outcome in set(CheckOutcome) else CheckOutcome.block.value,
                    "reason": _clip(str(r.reason), MAX_REASON_CHARS),
                    "evidence": bounded(_jsonable(dict(r.evidence or {}))),
                }
            )
    return results


def policies_of(files: list[Any]) -> list[dict[str, str]]:
    """The policies a request was checked under, read back from its files' check results."""
    seen: dict[str, dict[str, str]] = {}
    for f in files:
        for c in f.checks or []:
            if "policy" in c and c["policy"] not in seen:
                seen[c["policy"]] = {
                    "name": c["policy"],
                    "version": str(c.get("policy_version", "")),
                    "digest": str(c.get("policy_digest", "")),
                }
    return [seen[k] for k in sorted(seen)]


def make_context(
    identifiers: set[str],
    file_count: int,
    total_size: int,
    datasets: list[Dataset] | None = None,
    request_files: dict[str, str] | None = None,
    request_paths: dict[str, Path] | None = None,
    job_outputs: Mapping[str, tuple[Path, str]] | None = None,
    model_sandbox: ModelSandbox | None = None,
    released: Mapping[str, list[Any]] | None = None,
) -> CheckContext:
    """What the checks know beyond each file: identifiers, request size, the input datasets
    (derived volumes are compared with their series), every file's SHA-256 (ACRO results),
    and for the model-release review the job's recorded outputs (a model card and the tables
    it names) and the sandbox models run in."""
    return CheckContext(
        identifiers=identifiers,
        file_count=file_count,
        total_size=total_size,
        dataset_paths=[Path(d.path) for d in datasets or []],
        request_files=dict(request_files or {}),
        request_paths=dict(request_paths or {}),
        job_outputs=job_outputs if job_outputs is not None else {},
        datasets={d.id: Path(d.path) for d in datasets or []},
        model_sandbox=model_sandbox,
        released=dict(released or {}),
        cohort_size=cohort_size(datasets or []),
    )


REVIEWER_ONLY = "reviewer_only"


def for_requester(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check results without the evidence only reviewers may see.

    Some evidence quotes what the job wrote (text OCRed from pixels, NIfTI header text, EXIF
    values): shown to the requester before review, it would be a way round the airlock.
    """
    out = []
    for c in checks:
        evidence = c.get("evidence")
        if isinstance(evidence, dict) and REVIEWER_ONLY in evidence:
            c = {**c, "evidence": {k: v for k, v in evidence.items() if k != REVIEWER_ONLY}}
        out.append(c)
    return out
