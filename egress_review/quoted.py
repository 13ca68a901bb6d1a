"""Check results as the requester sees them: what they quote from the job, screened.

A check's reason and evidence quote the file they judged (column names, labels, chunk types,
parser errors, an ACRO ``results.json``'s output ids and statuses), and the file was written
by the job. They are shown to the requester before any review, so they are an output channel
like the log: 200 ACRO output ids of 80 characters each carried whatever the job chose. Each
result's requester-visible text is therefore judged by the job's log screen (identifiers in
any handled disguise, encoded runs, payload summed over neighbouring lines); a result with
anything withheld keeps its check name and outcome, its reason becomes fixed words, and the
original reason and evidence move into the reviewer-only evidence, which reviewers read and
the requester and the disclosure record never show (`checking.for_requester`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from egress_review.checking import REVIEWER_ONLY
from egress_review.logscreen import LogScreen

WITHHELD_REASON = (
    "[tre] this check's reason quotes what the job wrote in a form the log screening withholds "
    "(an identifier or encoded data); reviewers see it"
)


# Checks whose reason and evidence are fixed words, numbers and ids the server made (an
# earlier request's id, 32 hex digits, reads to the screen as encoded data): nothing the job
# wrote, so nothing to screen (`checks.released`).
SERVER_WORDED = frozenset({"sdc:differencing_releases", "sdc:released_share"})


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, dict keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _lines(texts: Iterator[str], width: int) -> list[str]:
    """The texts as log lines no longer than the screen's line limit (a reason may be longer
    than a log line may; a long token is cut, so an encoded run still reads as one)."""
    lines: list[str] = []
    for text in texts:
        flat = " ".join(text.split())
        if flat:
            lines += textwrap.wrap(flat, width=width, break_long_words=True, break_on_hyphens=False)
    return lines


def screened_results(
    results: dict[str, list[dict[str, Any]]], screen: LogScreen
) -> dict[str, list[dict[str, Any]]]:
    """Every file's ``results``, with each result whose requester-visible text the screen
    withholds turned into fixed words (the original kept as reviewer-only evidence).

    All results of the request are judged together, as one log: six results that each quote
    80 characters of one base64 stream are one payload, as six log lines would be."""
    spans: list[tuple[str, int, int, int]] = []  # path, result index, first line, end line
    lines: list[str] = []
    for path, file_results in results.items():
        for i, result in enumerate(file_results):
            if result.get("check") in SERVER_WORDED:
                continue
            first = len(lines)
            lines += _lines(
                _strings([result.get("reason", ""), _shown(result.get("evidence"))]), screen.max_line_chars
            )
            spans.append((path, i, first, len(lines)))
    text = ("\n".join(lines) + "\n").encode() if lines else b""
    screening = replace(screen, limit_bytes=max(screen.limit_bytes, len(text))).screen_log(text, final=True)
    withheld = [line.withheld for line in screening.lines]
    if len(withheld) != len(lines):  # a quoted text did not split into the lines judged: fail closed
        withheld = [True] * len(lines)
    out = {path: list(file_results) for path, file_results in results.items()}
    for path, i, first, end in spans:
        if any(withheld[first:end]):
            out[path][i] = _for_reviewers(out[path][i])
    return out


def _shown(evidence: Any) -> Any:
    """The evidence the requester would see (all but the reviewer-only part)."""
    if isinstance(evidence, dict):
        return {k: v for k, v in evidence.items() if k != REVIEWER_ONLY}
    return evidence


def _for_reviewers(result: dict[str, Any]) -> dict[str, Any]:
    evidence = result.get("evidence")
    hidden = dict(evidence.get(REVIEWER_ONLY) or {}) if isinstance(evidence, dict) else {}
    hidden.update({"reason": result.get("reason", ""), "evidence": _shown(evidence)})
    return {**result, "reason": WITHHELD_REASON, "evidence": {REVIEWER_ONLY: hidden}}
