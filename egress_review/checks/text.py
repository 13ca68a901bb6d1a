"""Free text, logs, JSON and table cells: the dataset's identifiers and smuggled blobs."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from pydicom.uid import UID_dictionary

from egress_review.checks.containers import entropy
from egress_review.checks.hashed_ids import hashed_lines
from egress_review.checks.identifiers import IdentifierMatcher, matcher_for
from egress_review.checks.markup_text import has_markup, shown_text
from egress_review.checks.model import CheckContext, CheckResult, action_outcome, mask
from egress_review.disguised import SqueezedIndex, disguised_lines, squeeze
from egress_review.split_parts import SplitIndex
from tre.plural import count
from tre.policy import Policy

MAX_TEXT_BYTES = 64 * 1024 * 1024


def check_identifiers(
    text: str, policy: Policy, context: CheckContext, check: str = "identifiers"
) -> CheckResult:
    """Names, IDs and UIDs from the source DICOM headers appearing anywhere in the text."""
    matcher = matcher_for(policy, context.identifiers)
    if not matcher:
        return CheckResult(
            check=check,
            outcome="pass",
            reason="no dataset identifiers to look for (the job read no DICOM data with identifying headers)",
            evidence={"identifiers_known": 0},
        )
    hits = matcher.find(text)
    if not hits:
        # the identifiers the matcher keeps, found once for the three searches below (each
        # found them anew: a search of every identifier, most of a small file's check time)
        kept = _kept(matcher, context.identifiers, policy)
        disguised = _disguised_hits(text, matcher, kept)
        if disguised:
            return CheckResult(
                check=f"{check}:disguised",
                outcome=action_outcome(policy.text.identifier_action),
                reason="patient identifiers from the dataset written in disguise (spaced out, run "
                "together, reversed, ROT13, look-alike or invisible characters, text escapes or short "
                + (
                    f"encodings) ({_lines(disguised)})"
                    if disguised != [0]
                    else "encodings), run together across line breaks"
                ),
                evidence={"lines": disguised[:20], "count": len(disguised)},
            )
        split = _split_hits(text, kept)
        if split:
            return CheckResult(
                check=f"{check}:split",
                outcome=action_outcome(policy.text.identifier_action),
                reason="a patient identifier from the dataset written in parts with labels between them "
                f"(e.g. 'part 1: ..., part 2: ...') ({_lines(split)})",
                evidence={"lines": split[:20], "count": len(split)},
            )
        hidden = _hidden_hits(text, matcher, kept, check, policy)
        if hidden is not None:
            return hidden
        if len(text) > MAX_DISGUISED_CHARS:
            return CheckResult(
                check=f"{check}:disguised",
                outcome="flag",
                reason="none of the dataset's patient names, IDs or UIDs appear; the text is too long "
                f"to be searched for disguised identifiers past its first {MAX_DISGUISED_CHARS >> 20} MiB",
                evidence={"identifiers_known": len(matcher), "searched_chars": MAX_DISGUISED_CHARS},
            )
        return CheckResult(
            check=check,
            outcome="pass",
            reason="none of the dataset's patient names, IDs or UIDs appear",
            evidence={"identifiers_known": len(matcher)},
        )
    shown = [{"identifier": mask(h.identifier), "line": h.line} for h in hits[:20]]
    lines = sorted({h.line for h in hits})
    return CheckResult(
        check=check,
        outcome=action_outcome(policy.text.identifier_action),
        reason=f"{count(len(hits), 'occurrence')} of patient identifiers from the dataset "
        "(DICOM headers or its tables) "
        f"({_lines(lines)})",
        evidence={"matches": shown, "count": len(hits)},
    )


# The disguise search rewrites every line several ways (1-3 CPU-s per MiB of a CSV); past
# this many characters the rest of a text is searched plainly only, and the file is flagged.
MAX_DISGUISED_CHARS = 2 * 1024 * 1024


_KEPT: dict[tuple[frozenset[str], str], frozenset[str]] = {}
MAX_KEPT_SETS = 8  # identifier sets remembered (one a dataset the server checks requests of)


def _kept(matcher: IdentifierMatcher, identifiers: Iterable[str], policy: Policy) -> frozenset[str]:
    """The identifiers the matcher keeps (not too short, not a declared pseudonym), in one pass.

    The pass searches every identifier, most of a small file's check time, and a request's
    files (and each file's name) share the dataset's identifiers: it is remembered for the
    identifier set and the policy's rules `matcher_for` reads (airlock round 18)."""
    ids = frozenset(identifiers)
    key = (ids, policy.text.model_dump_json() + repr(policy.dicom.pseudonym_patterns))
    kept = _KEPT.get(key)
    if kept is None:
        listed = sorted(ids)
        found = matcher.find("\n".join(listed), limit=len(listed) * 4 + 50)
        kept = frozenset(listed[h.line - 1] for h in found)
        if len(_KEPT) >= MAX_KEPT_SETS:
            _KEPT.clear()
        _KEPT[key] = kept
    return kept


def _hidden_hits(
    text: str, matcher: IdentifierMatcher, kept: frozenset[str], check: str, policy: Policy
) -> CheckResult | None:
    """An identifier the text hides from a plain search another way (airlock round 18): as its
    unsalted hash (`hashed_ids`: a pseudonym anyone with the ID list reverses), or split by
    markup a viewer joins (`markup_text`: ``<tspan>Z</tspan><tspan>QX-0003</tspan>``)."""
    head = text[:MAX_DISGUISED_CHARS]
    hashed = hashed_lines(head, kept)
    if hashed:
        return CheckResult(
            check=f"{check}:hashed",
            outcome=action_outcome(policy.text.identifier_action),
            reason="patient identifiers from the dataset written as their MD5/SHA hash, which anyone "
            "holding the identifiers reverses (use the agreement's pseudonyms or a keyed hash whose "
            f"key stays inside) ({_lines(hashed)})",
            evidence={"lines": hashed[:20], "count": len(hashed)},
        )
    if not has_markup(head):
        return None
    shown = shown_text(head)
    hits = matcher.find(shown) if shown != head else []
    if not hits:
        return None
    lines = sorted({h.line for h in hits})
    return CheckResult(
        check=f"{check}:markup",
        outcome=action_outcome(policy.text.identifier_action),
        reason="patient identifiers from the dataset split by markup tags that a viewer joins "
        f"({_lines(lines)})",
        evidence={"lines": lines[:20], "count": len(hits)},
    )


def _split_hits(text: str, kept: frozenset[str]) -> list[int]:
    """1-based lines where an identifier starts written in labelled parts (`split_parts`)."""
    index = SplitIndex(kept)
    return index.lines_with(text[:MAX_DISGUISED_CHARS]) if index else []


def _disguised_hits(text: str, matcher: IdentifierMatcher, kept: frozenset[str]) -> list[int]:
    """1-based line numbers holding an identifier in a disguise the job log's screen also sees
    through (`egress_review.disguised`): an output file is the same channel as the log, so a
    name the log would withhold must not leave in a file either."""
    lines = text[:MAX_DISGUISED_CHARS].split("\n")
    squeezed = SqueezedIndex(kept)
    hits = sorted(i + 1 for i in disguised_lines(lines, matcher, squeezed))
    if not hits and squeezed and squeezed.lines_with([squeeze(text[:MAX_DISGUISED_CHARS])]):
        hits = [0]  # wrapped across lines ("HOSP-7" at one line's end, "7-1234" at the next's start)
    return hits


def check_patterns(text: str, policy: Policy) -> list[CheckResult]:
    """Policy regexes for identifier-like strings (UIDs, e-mail addresses...)."""
    out: list[CheckResult] = []
    for name, pattern in policy.text.patterns.items():
        rx = re.compile(pattern)
        found: list[dict[str, object]] = []
        line, pos = 1, 0
        for m in rx.finditer(text):
            line += text.count("\n", pos, m.start())
            pos = m.start()
            if is_standard_uid(m.group(0)):
                continue  # SOP Class / Transfer Syntax UIDs are public constants, not identifiers
            found.append({"line": line, "match": mask(m.group(0))})
            if len(found) >= 20:
                break
        if found:
            out.append(
                CheckResult(
                    check=f"pattern:{name}",
                    outcome=action_outcome(policy.text.pattern_action),
                    reason=f"text contains {len(found)}{'+' if len(found) >= 20 else ''} "
                    f"{'match' if len(found) == 1 else 'matches'} of {name!r}",
                    evidence={"matches": found},
                )
            )
    return out


_HEX_RUN = re.compile(r"[0-9a-fA-F]+")
DICOM_STANDARD_ROOT = "1.2.840.10008."


def is_standard_uid(value: str) -> bool:
    """A UID defined by the DICOM standard (PS3.6 Annex A; pydicom's UID dictionary)."""
    return value in UID_dictionary or value.startswith(DICOM_STANDARD_ROOT)


def check_encoded_blobs(text: str, policy: Policy) -> CheckResult | None:
    """Long base64 or hex runs: the way to carry an image or a file out inside a log.

    Hex is a subset of the base64 alphabet, so one regex pass (anchored at the start of a
    run, which keeps it linear) finds both; each run is then classified and decoded.
    """
    rules = policy.text
    run_rx = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{" + str(rules.encoded_blob_min_chars) + r",}={0,2}")
    found: list[dict[str, object]] = []
    for m in run_rx.finditer(text):
        run = m.group(0)
        kind = "hex" if _HEX_RUN.fullmatch(run) and len(run) % 2 == 0 else "base64"
        try:
            raw = bytes.fromhex(run) if kind == "hex" else base64.b64decode(run + "=" * (-len(run) % 4))
        except (binascii.Error, ValueError):
            continue
        found.append(
            {"kind": kind, "offset": m.start(), "chars": len(run), "decoded_entropy": round(entropy(raw), 3)}
        )
        if len(found) >= 20:
            break
    if not found:
        return None
    largest = max(int(str(f["chars"])) for f in found)
    return CheckResult(
        check="encoded_blob",
        outcome=action_outcome(rules.encoded_blob),
        reason=f"text contains {count(len(found), 'long encoded run')} (largest {largest} characters) "
        "that could hold binary data",
        evidence={"runs": found},
    )


def check_text(text: str, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """All text checks on decoded text."""
    out = [check_identifiers(text, policy, context)]
    out.extend(check_patterns(text, policy))
    blob = check_encoded_blobs(text, policy)
    if blob is not None:
        out.append(blob)
    return out


def _lines(numbers: list[int]) -> str:
    """``lines 3, 7, 12`` for a finding's reason: the first ten, ``...`` when there are more."""
    return f"lines {', '.join(map(str, numbers[:10]))}{'...' if len(numbers) > 10 else ''}"
