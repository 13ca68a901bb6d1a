"""DICOM outputs against the PS3.15 Annex E Basic Application Level Confidentiality Profile.

Every attribute the profile removes or replaces (Table E.1-1, in `annex_e`) that is present
with a value blocks the file, unless the dataset's policy allows one of the profile's retain
options or accepts the value as a dummy. UIDs (action U) must be *replaced*: a UID is fine
only when it is not one of the source dataset's UIDs; if the source UIDs are unknown the
replacement cannot be verified and is flagged. Private attributes block (the profile removes
them) unless the Retain Safe Private option is on, in which case reviewers see them.
BurnedInAnnotation YES blocks: the pixels themselves carry text. PatientIdentityRemoved
missing or not YES is flagged: the producer did not claim to have de-identified the file.
Values equal to a source identifier block wherever they appear, even in attributes the
profile keeps (a patient name copied into SeriesDescription is still a patient name).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from egress_review.checks import annex_e, ocr
from egress_review.checks.identifiers import MALFORMED_DICOM, IdentifierMatcher, matcher_for
from egress_review.checks.model import CheckContext, CheckResult, action_outcome, mask
from tre.plural import count
from tre.policy import DicomRules, Policy

# PS3.15 E.3.7: Retain Patient Characteristics Option.
PATIENT_CHARACTERISTICS = frozenset(
    {
        "PatientAge",
        "PatientSex",
        "PatientSize",
        "PatientWeight",
        "EthnicGroup",
        "SmokingStatus",
        "PregnancyStatus",
        "PatientSexNeutered",
    }
)
TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})
MAX_REPORTED = 50
PIXEL_ERRORS: tuple[type[Exception], ...] = (*MALFORMED_DICOM, AttributeError, ImportError)


def _tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _empty(elem: DataElement) -> bool:
    value = elem.value
    if value is None:
        return True
    if elem.VR == "SQ":
        return len(value) == 0
    if isinstance(value, bytes):
        return not value.strip(b"\x00 ")
    if isinstance(value, str):
        return not value.strip("\x00 ")
    try:
        return len(value) == 0
    except TypeError:
        return False


def _text_values(elem: DataElement) -> list[str]:
    if elem.VR in ("OB", "UN") and isinstance(elem.value, bytes) and int(elem.tag) != 0x7FE00010:
        # byte values (private blobs, UN elements) can be text in disguise: search them as Latin-1
        return [elem.value[:65536].decode("latin-1").replace("\x00", " ").strip()] if elem.value else []
    if elem.VR in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return []
    value = elem.value
    items = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


class _Walker:
    """Walks a dataset (sequences included) and collects findings per rule."""

    def __init__(self, rules: DicomRules, context: CheckContext, matcher: IdentifierMatcher) -> None:
        self.rules = rules
        self.context = context
        self.matcher = matcher
        self.source = {i.strip() for i in context.identifiers}
        self.present: list[dict[str, Any]] = []
        self.private: list[dict[str, Any]] = []
        self.source_uids: list[dict[str, Any]] = []
        self.unverified_uids: list[dict[str, Any]] = []
        self.identifier_hits: list[dict[str, Any]] = []
        self.allowed_res = {k: re.compile(v) for k, v in rules.allowed_values.items()}
        self.dummies = {d.strip().upper() for d in rules.dummy_values}
        self.pseudonyms = [re.compile(p) for p in rules.pseudonym_patterns]

    def _retained(self, row: annex_e.AnnexEAttribute, elem: DataElement) -> bool:
        retain = self.rules.retain
        if row.keyword in retain.keywords:
            return True
        if retain.patient_characteristics and row.keyword in PATIENT_CHARACTERISTICS:
            return True
        return retain.longitudinal_temporal and elem.VR in TEMPORAL_VRS

    def _acceptable_dummy(self, row: annex_e.AnnexEAttribute, elem: DataElement) -> bool:
        values = _text_values(elem)
        if not values:
            return False
        rx = self.allowed_res.get(row.keyword)
        if rx is not None and all(rx.fullmatch(v) for v in values):
            return True
        if self.pseudonyms and all(any(p.fullmatch(v) for p in self.pseudonyms) for v in values):
            return True  # the agreement's pseudonym (SUBJ-0001) replaces the identifier
        return all(v.upper() in self.dummies for v in values)

    @staticmethod
    def _add(bucket: list[dict[str, Any]], item: dict[str, Any]) -> None:
        if len(bucket) < MAX_REPORTED:
            bucket.append(item)

    def walk(self, ds: Dataset, path: str = "") -> None:
        for elem in ds:
            tag = int(elem.tag)
            where = f"{path}{elem.keyword or _tag_str(tag)}"
            desc = {"tag": _tag_str(tag), "keyword": elem.keyword or "", "path": where}
            temporal_kept = self.rules.retain.longitudinal_temporal and elem.VR in TEMPORAL_VRS
            for value in _text_values(elem) if self.matcher and not temporal_kept else []:
                if self.matcher.find(value):
                    self._add(self.identifier_hits, {**desc, "value": mask(value)})
                    break
            if Tag(tag).is_private:
                if not _empty(elem) or elem.VR == "SQ":
                    self._add(self.private, {**desc, "vr": elem.VR, "name": elem.name})
                if elem.VR == "SQ":
                    for i, item in enumerate(elem.value or []):
                        self.walk(item, f"{where}[{i}].")
                continue
            row = annex_e.lookup(tag)
            if row is not None and not _empty(elem) and not self._retained(row, elem):
                if row.action == "U":
                    self._check_uid(elem, desc)
                elif row.action == "X/Z/U*" and elem.VR == "SQ":
                    pass  # kept: the UIDs inside are checked as their own attributes
                elif not self._acceptable_dummy(row, elem):
                    self._add(self.present, {**desc, "name": row.name, "action": row.action})
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value or []):
                    self.walk(item, f"{where}[{i}].")

    def _check_uid(self, elem: DataElement, desc: dict[str, Any]) -> None:
        values = _text_values(elem)
        if any(v in self.source for v in values):
            self._add(self.source_uids, desc)
        elif not any("." in i for i in self.source):
            self._add(self.unverified_uids, desc)


def check_dicom(path: Path, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """All Annex E checks on one DICOM file; one result per rule that fired, or a pass."""
    rules = policy.dicom
    matcher = matcher_for(policy, context.identifiers)
    walker = _Walker(rules, context, matcher)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=False)
        walker.walk(ds.file_meta, "meta.")
        walker.walk(ds)
    except MALFORMED_DICOM as exc:
        # pydicom parses lazily, so a corrupt element may only fail during the walk.
        return [CheckResult(check="dicom", outcome="block", reason=f"malformed DICOM file: {str(exc)[:300]}")]
    out: list[CheckResult] = []
    if walker.identifier_hits:
        out.append(
            CheckResult(
                check="dicom:identifiers",
                outcome="block",
                reason="attribute values equal patient identifiers of the source data: "
                + ", ".join(
                    dict.fromkeys(f"{h['keyword'] or h['tag']} {h['tag']}" for h in walker.identifier_hits)
                ),
                evidence={"attributes": walker.identifier_hits},
            )
        )
    if walker.present:
        names = ", ".join(f"{p['keyword']} {p['tag']}" for p in walker.present[:8])
        more = f" and {len(walker.present) - 8} more" if len(walker.present) > 8 else ""
        out.append(
            CheckResult(
                check="dicom:annex_e",
                outcome=action_outcome(rules.attribute_present),
                reason="attributes the DICOM PS3.15 Annex E Basic Profile removes or replaces are present: "
                f"{names}{more}",
                evidence={"attributes": walker.present},
            )
        )
    if walker.private:
        action = "flag" if rules.retain.safe_private else rules.private_tags
        out.append(
            CheckResult(
                check="dicom:private_tags",
                outcome=action_outcome(action),
                reason=f"{'at least ' if len(walker.private) >= MAX_REPORTED else ''}"
                f"{count(len(walker.private), 'private attribute')} present "
                f"(e.g. {walker.private[0]['tag']}); "
                "their content is vendor-defined and can hold identifiers",
                evidence={"attributes": walker.private},
            )
        )
    if walker.source_uids:
        out.append(
            CheckResult(
                check="dicom:uids",
                outcome="block",
                reason="UIDs were not replaced: "
                + ", ".join(f"{u['keyword']} {u['tag']}" for u in walker.source_uids[:8])
                + " equal the source data's UIDs",
                evidence={"attributes": walker.source_uids},
            )
        )
    elif walker.unverified_uids:
        out.append(
            CheckResult(
                check="dicom:uids",
                outcome=action_outcome(rules.unverifiable_uid),
                reason="the source data's UIDs are unknown, so replacement of UIDs cannot be verified",
                evidence={"attributes": walker.unverified_uids[:10]},
            )
        )
    burned = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    if burned == "YES":
        out.append(
            CheckResult(
                check="dicom:burned_in",
                outcome=action_outcome(rules.burned_in_annotation),
                reason="BurnedInAnnotation (0028,0301) is YES: identifying text is part of the pixels",
                evidence={"tag": "(0028,0301)", "value": burned},
            )
        )
    preamble = getattr(ds, "preamble", None) or b""
    preamble_hits = matcher.find(preamble.decode("latin-1").replace("\x00", " ")) if matcher else []
    if preamble_hits:
        out.append(
            CheckResult(
                check="dicom:preamble_identifiers",
                outcome=action_outcome(policy.text.identifier_action),
                reason=f"the 128-byte DICOM preamble (before 'DICM', never shown by viewers) holds "
                f"{count(len(preamble_hits), 'patient identifier')} of the dataset",
                evidence={"matches": [{"identifier": mask(h.identifier)} for h in preamble_hits[:10]]},
            )
        )
    elif preamble.strip(b"\x00"):
        out.append(
            CheckResult(
                check="dicom:preamble",
                outcome="flag",
                reason="the 128-byte DICOM preamble is not empty: it can make the file a valid second "
                "format at the same time (TIFF or executable polyglot)",
                evidence={"preamble_start": preamble[:8].hex()},
            )
        )
    out.extend(_pixel_text(ds, policy, context))
    out.extend(_pixel_bytes(ds, policy, context))
    out.extend(_pixel_similarity(ds, policy, context))
    removed = str(ds.get("PatientIdentityRemoved", "")).strip().upper()
    if removed != "YES":
        out.append(
            CheckResult(
                check="dicom:identity_removed",
                outcome=action_outcome(rules.identity_not_removed),
                reason="PatientIdentityRemoved (0012,0062) is "
                + ("missing" if not removed else repr(removed))
                + ": the file does not declare that it was de-identified",
                evidence={"tag": "(0012,0062)", "value": removed or None},
            )
        )
    if not [r for r in out if r.outcome != "pass"]:
        out.append(
            CheckResult(
                check="dicom",
                outcome="pass",
                reason="no Annex E Basic Profile attributes, private tags or source identifiers present",
                evidence={"method": str(ds.get("DeidentificationMethod", ""))[:200]},
            )
        )
    return out


_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{6,}")
# one character per 16-bit pixel value (little endian, as DICOM stores it)
_PRINTABLE_WIDE_RUN = re.compile(rb"(?:[\x20-\x7e]\x00){6,}")
# Pixel bytes read for text: at most this many (a 4096 x 4096 x 2 frame is 32 MiB).
MAX_PIXEL_TEXT_BYTES = 64 * 1024 * 1024


def _pixel_bytes(ds: Dataset, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """An identifier written into the pixel bytes as text (not drawn: OCR cannot see it).
    Only identifiers of six characters or more, in printable runs of six or more: shorter ones
    turn up by chance in megabytes of pixel values."""
    value = ds.PixelData if "PixelData" in ds else None
    if not isinstance(value, bytes) or not value:
        return []
    long_ids = {i for i in context.identifiers if len(i.strip()) >= 6}
    matcher = matcher_for(policy, long_ids)
    if not matcher:
        return []
    head = value[:MAX_PIXEL_TEXT_BYTES]
    runs = [r.decode("ascii") for r in _PRINTABLE_RUN.findall(head)]
    runs += [r.decode("utf-16-le") for start in (0, 1) for r in _PRINTABLE_WIDE_RUN.findall(head[start:])]
    hits = matcher.find("\n".join(runs)) if runs else []
    if not hits:
        return []
    return [
        CheckResult(
            check="dicom:pixel_bytes",
            outcome=action_outcome(policy.text.identifier_action),
            reason=f"the pixel data holds {count(len(hits), 'patient identifier')} from the "
            f"dataset written as "
            "text into its bytes",
            evidence={"matches": [mask(h.identifier) for h in hits[:20]]},
        )
    ]


def _pixel_similarity(ds: Dataset, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """A de-identified copy of an input image is still the scan: the reviewers are told (a
    flag, since the policy may let de-identified DICOM leave; a NIfTI copy blocks)."""
    from egress_review.checks.images import input_match

    if "PixelData" not in ds or not context.dataset_paths:
        return []
    try:
        pixels = ds.pixel_array
    except PIXEL_ERRORS:
        return []
    frame = pixels[len(pixels) // 2] if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4) else pixels
    if frame.ndim == 3:
        frame = frame.mean(axis=-1)
    similar = input_match(frame, context, policy.image.volumes)
    if similar is None:
        return []
    return [
        CheckResult(
            check="dicom:similar_to_input",
            outcome="flag",
            reason=f"the image matches an input DICOM image of the dataset (correlation {similar[0]:.3f}): "
            "a de-identified copy of the scan itself, not a derived result",
            evidence={"correlation": round(similar[0], 4)},
        )
    ]


def _pixel_text(ds: Dataset, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """OCR of the pixel data (and overlay planes): names drawn in with BurnedInAnnotation=NO."""
    from egress_review.checks.images import ocr_results

    if not policy.image.ocr or "PixelData" not in ds:
        return []
    try:
        pixels = ds.pixel_array
    except PIXEL_ERRORS as exc:
        return [
            CheckResult(
                check="ocr",
                outcome=action_outcome(policy.image.ocr_unavailable),
                reason="the pixel data could not be decoded to read burned-in text "
                f"({type(exc).__name__}: {str(exc)[:120]})",
            )
        ]
    images = [ocr.to_gray(pixels)]
    for group in range(0x6000, 0x6020, 2):
        if (group << 16 | 0x3000) in ds:
            try:
                overlay = ds.overlay_array(group)
            except PIXEL_ERRORS:
                continue
            images.append(ocr.to_gray(overlay.astype("uint8") * 255))
    out: list[CheckResult] = []
    for i, img in enumerate(images):
        what = "DICOM image" if i == 0 else "DICOM overlay"
        out.extend(r for r in ocr_results(img, policy, context, what) if r.outcome != "pass" or r.evidence)
    return out
