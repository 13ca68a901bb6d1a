"""ACRO interoperability: a researcher's ACRO ``results.json`` shown beside tre's own checks.

Researchers who use ACRO (AI-SDC/ACRO) in their job call ``acro.finalise(folder, "json")``,
which writes ``results.json`` (``{"version", "results": {output_id: {uid, status, type,
properties, files: [{name, sdc}], outcome, command, summary, timestamp, comments,
exception}}}``) and ``checksums/<file>.txt`` (SHA-256 of each output). When such a folder is
part of an egress request, reviewers see ACRO's per-output status and the researcher's
exception requests, next to tre's results for the same files.

Nothing ACRO says is trusted: results.json was written by the job. Every output it lists is
re-checked by tre like any file, and its checksums are compared with the SHA-256 of the frozen
copy in the request (a mismatch means the file changed after ACRO saw it, and blocks). ACRO's
free text (summary, command, exception) is job-controlled and reviewer-only evidence.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egress_review.checks.model import CheckContext, CheckResult
from tre.plural import agree, count

MAX_OUTPUTS = 200
ACRO_STATUSES = frozenset({"pass", "fail", "review"})


@dataclass
class AcroOutput:
    """One ACRO output record as claimed, and what tre could verify about it."""

    uid: str
    status: str
    kind: str
    files: list[str]
    exception: str = ""
    summary: str = ""
    command: str = ""
    verified: dict[str, str] = field(default_factory=dict)  # file -> verified|mismatch|missing|unverified


def is_acro_results(doc: Any) -> bool:
    """Whether a JSON document has the shape of ACRO's results.json."""
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict) or "version" not in doc:
        return False
    records = list(doc["results"].values())
    return bool(records) and all(isinstance(r, dict) and "status" in r and "files" in r for r in records)


def parse_outputs(doc: dict[str, Any]) -> list[AcroOutput]:
    out = []
    for key, rec in list(doc["results"].items())[:MAX_OUTPUTS]:
        files = [str(f.get("name", "")) for f in rec.get("files") or [] if isinstance(f, dict)]
        out.append(
            AcroOutput(
                uid=str(rec.get("uid", key))[:80],
                status=str(rec.get("status", "")).lower()[:20],
                kind=str(rec.get("type", ""))[:40],
                files=[f for f in files if f][:50],
                exception=str(rec.get("exception") or "")[:1000],
                summary=str(rec.get("summary") or "")[:500],
                command=str(rec.get("command") or "")[:500],
            )
        )
    return out


def _sibling(results_name: str, rel: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(results_name), rel))


def verify(outputs: list[AcroOutput], results_name: str, context: CheckContext) -> None:
    """Compare each listed file's ACRO checksum with the SHA-256 of its copy in the request."""
    for rec in outputs:
        for name in rec.files:
            path = _sibling(results_name, name)
            actual = context.request_files.get(path)
            if actual is None:
                rec.verified[name] = "missing"
                continue
            claim_path = context.request_paths.get(_sibling(results_name, f"checksums/{name}.txt"))
            if claim_path is None:
                rec.verified[name] = "unverified"
                continue
            try:
                claimed = Path(claim_path).read_text(encoding="ascii", errors="replace").strip().lower()
            except OSError:
                claimed = ""
            rec.verified[name] = "verified" if claimed == actual else "mismatch"


def check_acro_results(doc: dict[str, Any], display_name: str, context: CheckContext) -> list[CheckResult]:
    """ACRO's claims, verified where they can be: one result for the review, one per problem."""
    outputs = parse_outputs(doc)
    verify(outputs, display_name, context)
    out: list[CheckResult] = []
    mismatched = [(r.uid, f) for r in outputs for f, v in r.verified.items() if v == "mismatch"]
    if mismatched:
        out.append(
            CheckResult(
                check="acro:checksum",
                outcome="block",
                reason=f"{count(len(mismatched), 'file')} "
                f"{agree(len(mismatched), 'differs', 'differ')} from what ACRO "
                "checked (their SHA-256 is not the checksum ACRO wrote): ACRO's results do not "
                "describe the files in this request",
                evidence={"files": [{"output": u, "file": f} for u, f in mismatched[:20]]},
            )
        )
    unverified = [f for r in outputs for f, v in r.verified.items() if v in ("unverified", "missing")]
    failed = [r for r in outputs if r.status != "pass"]
    exceptions = [r for r in failed if r.exception.strip()]
    statuses = {s: sum(1 for r in outputs if r.status == s) for s in sorted({r.status for r in outputs})}
    reason = (
        f"ACRO results for {count(len(outputs), 'output')} ("
        + ", ".join(f"{n} {s}" for s, n in statuses.items())
        + f"); {count(len(exceptions), 'exception request')} from the researcher"
        + (f"; {count(len(unverified), 'listed file')} could not be verified" if unverified else "")
        + ". ACRO's claims are shown to reviewers; every file is checked by tre regardless"
    )
    out.append(
        CheckResult(
            check="acro:results",
            outcome="flag" if failed or unverified else "pass",
            reason=reason,
            evidence={
                "acro_version": str(doc.get("version", ""))[:40],
                "outputs": [
                    {"uid": r.uid, "status": r.status, "type": r.kind, "files": r.verified}
                    for r in outputs[:50]
                ],
                "reviewer_only": {
                    "exceptions": {r.uid: r.exception for r in exceptions[:50]},
                    "summaries": {r.uid: r.summary for r in outputs[:50] if r.summary},
                    "commands": {r.uid: r.command for r in outputs[:50] if r.command},
                },
            },
        )
    )
    return out


def claims_for(display_name: str, context: CheckContext) -> list[CheckResult]:
    """For a file an ACRO results.json in the same request lists: ACRO's status of it, beside tre's."""
    found: list[CheckResult] = []
    for name, path in context.request_paths.items():
        if posixpath.basename(name) != "results.json" or name == display_name:
            continue
        try:
            doc = json.loads(Path(path).read_bytes()[: 16 * 1024 * 1024])
        except (OSError, ValueError):
            continue
        if not is_acro_results(doc):
            continue
        for rec in parse_outputs(doc):
            if any(_sibling(name, f) == display_name for f in rec.files):
                found.append(
                    CheckResult(
                        check="acro:claim",
                        outcome="pass" if rec.status == "pass" else "flag",
                        reason=f"ACRO ({name}) reports this file as output {rec.uid!r} with status "
                        f"{rec.status!r}"
                        + ("; the researcher requests an exception" if rec.exception else ""),
                        evidence={
                            "results_json": name,
                            "status": rec.status,
                            "reviewer_only": {"exception": rec.exception, "summary": rec.summary},
                        },
                    )
                )
    return found
