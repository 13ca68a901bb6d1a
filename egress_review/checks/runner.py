"""`run_checks`: every check that applies to one staged file, chosen by its detected content."""

from __future__ import annotations

import json
from pathlib import Path

from egress_review.checks.detect import IMAGE_TYPES, TEXT_TYPES, decode_text, detect
from egress_review.checks.dicom import check_dicom
from egress_review.checks.files import check_hidden, check_limits, check_type
from egress_review.checks.images import check_nifti, check_raster
from egress_review.checks.model import CheckContext, CheckResult
from egress_review.checks.tables import check_table
from egress_review.checks.text import MAX_TEXT_BYTES, check_identifiers, check_text
from tre.policy import Policy


def run_checks(path: Path, display_name: str, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """Check one file under one policy; the caller combines outcomes with `worst`.

    ``path`` is the frozen staged copy; ``display_name`` the name the researcher gave it (its
    extension is compared with the content). Checks never trust the extension to decide which
    content checks run: a CSV renamed .png is still checked as a table.
    """
    path = Path(path)
    results: list[CheckResult] = [check_limits(path, policy, context)]
    if path.stat().st_size > policy.files.max_file_bytes:
        return results  # refuse to parse what is already over the limit
    detected = detect(path)
    results.extend(check_type(display_name, detected, policy))
    hidden, data = check_hidden(path, detected, policy)
    results.extend(hidden)
    name_check = check_identifiers(display_name, policy, context, check="file_name")
    if name_check.outcome != "pass":
        results.append(name_check)
    if detected.type in TEXT_TYPES:
        results.extend(_text_checks(path, data, detected.type, policy, context))
    elif detected.type in IMAGE_TYPES:
        results.extend(check_raster(path, policy, context))
    elif detected.type == "nifti" and data is not None:
        results.extend(check_nifti(data, policy, context))
    elif detected.type == "dicom":
        results.extend(check_dicom(path, policy, context))
    return results


def _text_checks(
    path: Path, data: bytes | None, kind: str, policy: Policy, context: CheckContext
) -> list[CheckResult]:
    """Decode the whole file (type detection only sampled the first MiB), then check it."""
    raw = data if data is not None else path.read_bytes()
    truncated = len(raw) > MAX_TEXT_BYTES or raw is data and path.stat().st_size > len(raw)
    text = decode_text(raw[:MAX_TEXT_BYTES], truncated=truncated)
    if text is None:
        # Text at the start, binary later: exactly how a payload would be appended to a log.
        return [
            CheckResult(
                check="text_decode",
                outcome="block",
                reason="the file starts as text but is not UTF-8 text throughout (binary bytes further in)",
            )
        ]
    out: list[CheckResult] = []
    if truncated:
        out.append(
            CheckResult(
                check="text_decode",
                outcome="flag",
                reason=f"only the first {MAX_TEXT_BYTES // (1024 * 1024)} MiB of this text were scanned",
            )
        )
    out.extend(check_text(text, policy, context))
    if kind == "json" and "\\u" in text:
        # "\u0044oe" is "Doe" to any JSON reader: scan the decoded strings as well.
        try:
            decoded = json.dumps(json.loads(text), ensure_ascii=False, indent=1)
        except ValueError:
            decoded = ""
        escaped = check_identifiers(decoded, policy, context, check="identifiers:json_decoded")
        if escaped.outcome != "pass":
            out.append(escaped)
    if kind in ("csv", "tsv"):
        out.extend(check_table(text, "\t" if kind == "tsv" else _delimiter(text), policy))
    return out


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    return ";" if first.count(";") > first.count(",") else ","
