"""Container-level checks that apply to every file: limits, type allowlist, hidden payloads."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from egress_review.checks.containers import (
    PNG_STANDARD_CHUNKS,
    Structure,
    entropy,
    find_signatures,
    jpeg_structure,
    png_structure,
)
from egress_review.checks.detect import ARCHIVE_TYPES, Detected, compatible, expected_type
from egress_review.checks.model import CheckContext, CheckResult, action_outcome
from tre.plural import agree
from tre.policy import Policy

MAX_SCAN_BYTES = 256 * 1024 * 1024


def check_limits(path: Path, policy: Policy, context: CheckContext) -> CheckResult:
    """File size, file count and request size against the policy's limits."""
    rules = policy.files
    size = path.stat().st_size
    problems: list[str] = []
    if size > rules.max_file_bytes:
        problems.append(f"file is {size} bytes, over the {rules.max_file_bytes}-byte limit")
    if context.file_count > rules.max_files:
        problems.append(f"request has {context.file_count} files, over the limit of {rules.max_files}")
    if context.total_size > rules.max_total_bytes:
        problems.append(
            f"request totals {context.total_size} bytes, over the {rules.max_total_bytes}-byte limit"
        )
    evidence = {
        "size": size,
        "max_file_bytes": rules.max_file_bytes,
        "file_count": context.file_count,
        "max_files": rules.max_files,
        "total_size": context.total_size,
        "max_total_bytes": rules.max_total_bytes,
    }
    if problems:
        return CheckResult(check="limits", outcome="block", reason="; ".join(problems), evidence=evidence)
    return CheckResult(
        check="limits", outcome="pass", reason="within size and count limits", evidence=evidence
    )


def check_type(display_name: str, detected: Detected, policy: Policy) -> list[CheckResult]:
    """Allowlist by detected content; archives; extension that disagrees with the content."""
    rules = policy.files
    out: list[CheckResult] = []
    evidence = {"detected": detected.type, "detail": detected.detail, "allowed": list(rules.allowed_types)}
    if detected.type in ARCHIVE_TYPES:
        allowed = detected.type in rules.allowed_types
        out.append(
            CheckResult(
                check="file_type",
                outcome=action_outcome(rules.archives) if allowed else "block",
                reason=f"file is an archive ({detected.detail}): reviewers cannot see what is inside; "
                "request the files individually"
                + ("" if allowed else f" (and policy {policy.name} does not allow {detected.type!r})"),
                evidence=evidence,
            )
        )
    elif detected.type == "model":
        out.append(
            CheckResult(
                check="file_type",
                outcome="pass",
                reason=f"content is a model artefact ({detected.detail}): it goes to model-release review",
                evidence=evidence,
            )
        )
    elif detected.type not in rules.allowed_types:
        out.append(
            CheckResult(
                check="file_type",
                outcome="block",
                reason=f"content is {detected.detail} ({detected.type!r}), "
                f"which policy {policy.name} does not allow",
                evidence=evidence,
            )
        )
    else:
        out.append(
            CheckResult(
                check="file_type", outcome="pass", reason=f"content is {detected.detail}", evidence=evidence
            )
        )
    expected = expected_type(display_name)
    if expected is None:
        out.append(
            CheckResult(
                check="extension",
                outcome=action_outcome(rules.extension_mismatch),
                reason=f"file name {display_name!r} has no recognised extension; "
                f"content is {detected.detail}",
                evidence={"detected": detected.type},
            )
        )
    elif not compatible(expected, detected.type) and not (expected in ("csv", "tsv") and detected.one_column):
        out.append(
            CheckResult(
                check="extension",
                outcome=action_outcome(rules.extension_mismatch),
                reason=f"extension says {expected!r} but the content is "
                f"{detected.detail} ({detected.type!r})",
                evidence={"extension_type": expected, "detected": detected.type},
            )
        )
    return out


def _structure(detected: Detected, data: bytes) -> Structure | None:
    if detected.type == "png":
        return png_structure(data)
    if detected.type == "jpeg":
        return jpeg_structure(data)
    return None


JPEG_USUAL_SEGMENTS = frozenset({"APP0", "APP1", "APP2", "APP14"})  # JFIF, Exif/XMP, ICC, Adobe


# Side regions that are compressed by their specification (zlib ICC profiles and text, the
# JPEG thumbnail in Exif): high entropy there is normal. Their signatures are still scanned.
COMPRESSED_BY_DESIGN = frozenset({"chunk iCCP", "chunk zTXt", "chunk iTXt", "segment APP1", "segment APP2"})


def _unusual_parts(kind: str, structure: Structure) -> list[str]:
    """PNG chunks outside the PNG 3rd edition list; JPEG APPn segments other than the usual."""
    if kind == "png":
        parts = [p for p in structure.parts if p.encode("latin-1") not in PNG_STANDARD_CHUNKS]
    else:
        parts = [p for p in structure.parts if p.startswith("APP") and p not in JPEG_USUAL_SEGMENTS]
    return sorted(set(parts))


def _read_for_scan(path: Path, detected: Detected, policy: Policy) -> bytes:
    """The bytes to scan: the file, or a gzip-wrapped NIfTI's inflated content (bounded)."""
    if not detected.gzip_wrapped:
        with path.open("rb") as fh:
            return fh.read(MAX_SCAN_BYTES)
    limit = policy.files.max_uncompressed_bytes
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"corrupt gzip stream: {exc}") from exc
    if len(data) > limit:
        raise OverflowError(f"inflates to more than {limit} bytes")
    return data


def check_hidden(path: Path, detected: Detected, policy: Policy) -> tuple[list[CheckResult], bytes | None]:
    """Trailing data, embedded containers and high-entropy side payloads.

    Returns the bytes read so later checks (NIfTI) need not inflate the file again.
    """
    rules = policy.files
    try:
        data = _read_for_scan(path, detected, policy)
    except OverflowError as exc:
        return [
            CheckResult(check="hidden_data", outcome="block", reason=f"compressed file {exc}", evidence={})
        ], None
    except ValueError as exc:
        return [CheckResult(check="hidden_data", outcome="block", reason=str(exc), evidence={})], None
    out: list[CheckResult] = []
    structure = _structure(detected, data)
    trailing_from: int | None = None
    if structure is not None:
        if not structure.ok:
            out.append(
                CheckResult(
                    check="structure",
                    outcome="block",
                    reason=f"{detected.type.upper()} structure is broken: {structure.error}",
                    evidence={"parts": structure.parts[:50]},
                )
            )
        elif structure.end < len(data):
            trailing_from = structure.end
            tail = data[structure.end :]
            out.append(
                CheckResult(
                    check="trailing_data",
                    outcome=action_outcome(rules.trailing_data),
                    reason=f"{len(tail)} bytes follow the end of the {detected.type.upper()} data "
                    f"(offset {structure.end}); viewers ignore them, so they can carry hidden content",
                    evidence={
                        "offset": structure.end,
                        "bytes": len(tail),
                        "entropy_bits_per_byte": round(entropy(tail), 3),
                        "all_zero": not any(tail),
                    },
                )
            )
    if structure is not None and structure.ok:
        unusual = _unusual_parts(detected.type, structure)
        if unusual:
            out.append(
                CheckResult(
                    check="unknown_chunks",
                    outcome=action_outcome(policy.image.unknown_chunks),
                    reason=f"non-standard {detected.type.upper()} parts present: {', '.join(unusual)}; "
                    "they are not displayed and can carry arbitrary data",
                    evidence={"parts": unusual},
                )
            )
    # Strong signatures anywhere except where the file's own format begins. An archive is
    # already refused as a whole, so listing its members' headers would only add noise.
    hits = (
        []
        if detected.type in ARCHIVE_TYPES or detected.zip_based
        else find_signatures(data, strong_only=True)
    )
    hits = [h for h in hits if h["offset"] != 0]
    regions: list[tuple[str, int, int]] = list(structure.side_regions) if structure else []
    if trailing_from is not None:
        regions.append(("trailing data", trailing_from, len(data)))
    for _label, start, end in regions:
        hits.extend(find_signatures(data, start, end, strong_only=False))
    seen: set[tuple[object, object]] = set()
    unique = []
    for h in sorted(hits, key=lambda h: int(str(h["offset"]))):
        key = (h["format"], h["offset"])
        if key not in seen:
            seen.add(key)
            off = int(str(h["offset"]))
            h["region"] = next((label for label, lo, hi in regions if lo <= off < hi), "file body")
            unique.append(h)
    if unique:
        formats = sorted({str(h["format"]) for h in unique})
        out.append(
            CheckResult(
                check="embedded_container",
                outcome=action_outcome(rules.embedded_containers),
                reason=f"found {', '.join(formats)} "
                f"{agree(len(unique), 'signature', 'signatures')} inside this {detected.type} file "
                f"(first at offset {unique[0]['offset']}): possible hidden archive or polyglot",
                evidence={"signatures": unique[:20]},
            )
        )
    for label, start, end in regions:
        if label in COMPRESSED_BY_DESIGN:
            continue
        payload = data[start:end]
        if len(payload) >= rules.entropy_min_bytes:
            bits = entropy(payload)
            if bits >= rules.entropy_threshold_bits:
                out.append(
                    CheckResult(
                        check="high_entropy",
                        outcome=action_outcome(rules.high_entropy),
                        reason=f"{label} holds {len(payload)} bytes of near-random data "
                        f"({bits:.2f} bits/byte): "
                        "possibly encrypted or compressed content",
                        evidence={
                            "region": label,
                            "offset": start,
                            "bytes": len(payload),
                            "entropy": round(bits, 3),
                        },
                    )
                )
    if detected.type == "binary" and len(data) >= rules.entropy_min_bytes:
        bits = entropy(data)
        if bits >= rules.entropy_threshold_bits:
            out.append(
                CheckResult(
                    check="high_entropy",
                    outcome=action_outcome(rules.high_entropy),
                    reason=f"unrecognised file of near-random bytes ({bits:.2f} bits/byte): "
                    "possibly encrypted",
                    evidence={"bytes": len(data), "entropy": round(bits, 3)},
                )
            )
    if not out:
        out.append(
            CheckResult(check="hidden_data", outcome="pass", reason="no hidden or trailing data found")
        )
    return out, data
