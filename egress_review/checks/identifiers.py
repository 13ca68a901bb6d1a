"""The source data's own identifiers, and finding them again in outputs.

A generic name detector would flag every author in a citation; the identifiers that matter
are the ones in *this* dataset's DICOM headers. They are gathered once per request from the
headers (pixels never read) and matched token by token, case-insensitively: a patient name
``DOE^JANE`` is found as "Jane Doe", "doe_jane.png" or "JANE".
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from egress_review.policy import TextRules

PERSON_NAME_KEYWORDS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "ResponsiblePerson",
)
ID_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "MedicalRecordLocator",
    "AdmissionID",
    "ServiceEpisodeID",
    "StudyID",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
)
FREE_KEYWORDS = ("PatientAddress", "PatientTelephoneNumbers")
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
SEQUENCE_KEYWORDS = ("OtherPatientIDsSequence",)
HEADER_TAGS = [*PERSON_NAME_KEYWORDS, *ID_KEYWORDS, *FREE_KEYWORDS, *UID_KEYWORDS, *SEQUENCE_KEYWORDS]

_TOKEN = re.compile(r"[0-9A-Za-z\u00c0-\uffff]+(?:[.\-_][0-9A-Za-z\u00c0-\uffff]+)*")
_SPLIT = re.compile(r"[\s^=,;/\\|]+")


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _values(ds: Dataset, keyword: str) -> Iterator[str]:
    if keyword not in ds:
        return
    value = ds.data_element(keyword)
    if value is None or value.value is None:
        return
    raw = value.value
    items = raw if isinstance(raw, list | tuple | pydicom.multival.MultiValue) else [raw]
    for item in items:
        if isinstance(item, bytes):
            item = item.decode("latin-1", errors="replace")
        text = str(item).strip()
        if text:
            yield text


def identifiers_from_dataset(ds: Dataset) -> set[str]:
    """Every identifying value in one header, with person names also split into components."""
    found: set[str] = set()
    for kw in PERSON_NAME_KEYWORDS:
        for name in _values(ds, kw):
            found.add(name)
            found.update(p for p in _SPLIT.split(name) if p)
    for kw in (*ID_KEYWORDS, *UID_KEYWORDS, *FREE_KEYWORDS):
        found.update(_values(ds, kw))
    for item in ds.get("OtherPatientIDsSequence", None) or []:
        found.update(_values(item, "PatientID"))
    return found


def gather_identifiers(dataset_path: Path, max_files: int = 100_000) -> set[str]:
    """Patient names (and their parts), IDs, accession numbers and instance UIDs of a dataset.

    Reads only the header tags it needs (``specific_tags``, ``stop_before_pixels``), so a
    thousand-slice series costs about as much as listing it. Unreadable files are skipped: the
    dataset was validated at registration, and a missing identifier only weakens a check that
    reviewers back up anyway.
    """
    root = Path(dataset_path)
    if root.is_file():
        files: Iterable[Path] = [root]
    elif root.is_dir():
        files = (Path(d) / f for d, _dirs, names in os.walk(root) for f in sorted(names))
    else:
        raise FileNotFoundError(f"dataset path {root} does not exist")
    found: set[str] = set()
    for count, path in enumerate(files):
        if count >= max_files:
            break
        if not _looks_like_dicom(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
            continue
        found |= identifiers_from_dataset(ds)
    return found


@dataclass(frozen=True)
class IdentifierHit:
    """One identifier found in text: which one (masked later), where."""

    identifier: str
    line: int


class IdentifierMatcher:
    """Case-insensitive, whole-token matching of a dataset's identifiers in text."""

    def __init__(self, identifiers: Iterable[str], rules: TextRules) -> None:
        ignore = [i.lower() for i in rules.ignore_identifiers]
        singles: dict[str, str] = {}
        phrases: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for ident in identifiers:
            norm = ident.strip().lower()
            if not norm or any(fnmatch.fnmatchcase(norm, pattern) for pattern in ignore):
                continue
            if norm.isdigit():
                if len(norm) < rules.min_numeric_identifier_length:
                    continue
            elif len(norm) < rules.min_identifier_length:
                continue
            parts = tuple(p for p in _SPLIT.split(norm) if p)
            if len(parts) == 1:
                singles[parts[0]] = ident
            elif parts:
                phrases.setdefault(parts[0], []).append((parts, ident))
        self.singles = singles
        self.phrases = phrases

    def __bool__(self) -> bool:
        return bool(self.singles or self.phrases)

    def find(self, text: str, limit: int = 50) -> list[IdentifierHit]:
        """Identifiers in ``text``: whole tokens, their dot/dash/underscore parts, and phrases."""
        hits: list[IdentifierHit] = []
        seen: set[tuple[str, int]] = set()
        for lineno, line in enumerate(text.splitlines(), start=1):
            tokens = [t.lower() for t in _TOKEN.findall(line)]
            candidates: list[str] = []
            for tok in tokens:
                candidates.append(tok)
                if any(c in tok for c in ".-_"):
                    candidates.extend(p for p in re.split(r"[.\-_]", tok) if p)
            for cand in candidates:
                ident = self.singles.get(cand)
                if ident is not None and (ident, lineno) not in seen:
                    seen.add((ident, lineno))
                    hits.append(IdentifierHit(ident, lineno))
            if self.phrases:
                words = [p for t in tokens for p in re.split(r"[.\-_]", t) if p]
                for i, word in enumerate(words):
                    for parts, ident in self.phrases.get(word, ()):
                        if tuple(words[i : i + len(parts)]) == parts and (ident, lineno) not in seen:
                            seen.add((ident, lineno))
                            hits.append(IdentifierHit(ident, lineno))
            if len(hits) >= limit:
                break
        return hits
