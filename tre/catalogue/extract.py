"""Catalogue facts from a dataset's DICOM headers (never its pixels).

The facts are one row per series: which subject and study it belongs to (as numbers in
order of first appearance: no PatientID or UID is kept), its modality, body part and
manufacturer. Counting subjects or studies for any combination of modality and body part is
then a pass over these rows, without reading the data again.

Header values are data, not vocabulary: a modality outside the DICOM defined terms, a body
part that is not a code string, or a manufacturer with characters outside a plain set is
recorded as unknown (``None``) rather than passed on.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from tre.catalogue.vocabulary import BODY_PART_RE, DICOM_MODALITIES
from tre.errors import TreError

_HEADER_TAGS = [
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "BodyPartExamined",
    "Manufacturer",
]
_MANUFACTURER_RE = re.compile(r"^[A-Z0-9][A-Z0-9 .,&()/+-]{0,63}$")
FACTS_VERSION = 1


@dataclass(frozen=True)
class SeriesFacts:
    """One series: subject and study numbers, and its header codes (``None``: unknown)."""

    subject: int
    study: int
    modality: str | None
    body_part: str | None
    manufacturer: str | None


@dataclass(frozen=True)
class DatasetFacts:
    """What the catalogue knows about one dataset."""

    series: tuple[SeriesFacts, ...]
    dicom_files: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FACTS_VERSION,
            "dicom_files": self.dicom_files,
            "series": [[s.subject, s.study, s.modality, s.body_part, s.manufacturer] for s in self.series],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetFacts:
        return cls(
            series=tuple(SeriesFacts(*row) for row in data.get("series", [])),
            dicom_files=int(data.get("dicom_files", 0)),
        )


def _entries(folder: Path) -> list[tuple[str, os.stat_result]]:
    """Every regular file under the folder (path relative to it) with its stat, in a stable
    order; symbolic links are neither followed nor listed (a link could point out of the
    dataset). One stat per file, from the directory scan itself; plain strings, because
    pathlib's per-path cost dominated the fingerprint (benchmarks/bench_catalogue.py)."""
    found = []
    stack = [""]
    root = os.fspath(folder)
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            if not rel:
                raise
            continue  # a folder the platform cannot list is not part of the dataset it sees
        subdirs = []
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(name)
            elif entry.is_file(follow_symlinks=False):
                found.append((name, entry.stat(follow_symlinks=False)))
        stack.extend(reversed(subdirs))
    return found


def fingerprint(folder: Path) -> str:
    """sha256 over every file's relative path, size and modification time: changes when a
    file is added, removed, replaced or rewritten, without reading any file."""
    if not folder.is_dir():
        raise TreError(f"dataset path {folder} is not a directory")
    digest = hashlib.sha256(f"v{FACTS_VERSION}\n".encode())
    for rel, st in _entries(folder):
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(errors="surrogateescape"))
    return "sha256:" + digest.hexdigest()


def _code(value: Any) -> str:
    return " ".join(str(value or "").strip().upper().split())


def _modality(value: Any) -> str | None:
    code = _code(value)
    return code if code in DICOM_MODALITIES else None


def _body_part(value: Any) -> str | None:
    code = _code(value)
    return code if BODY_PART_RE.match(code) else None


def _manufacturer(value: Any) -> str | None:
    text = _code(value)
    return text if _MANUFACTURER_RE.match(text) else None


def extract_facts(folder: Path) -> DatasetFacts:
    """Read the headers of every DICOM file under ``folder`` (pixels are never read)."""
    if not folder.is_dir():
        raise TreError(f"dataset path {folder} is not a directory")
    subjects: dict[str, int] = {}
    studies: dict[str, int] = {}
    series: dict[str, SeriesFacts] = {}
    n_dicom = 0
    for rel, _ in _entries(folder):
        path = folder / rel
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except (InvalidDicomError, OSError, ValueError, AttributeError, TypeError, KeyError, EOFError):
            continue
        study_uid = str(ds.get("StudyInstanceUID", "") or "")
        series_uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not study_uid and not series_uid and "Modality" not in ds:
            continue  # a DICOM file without the attributes of an image (e.g. a DICOMDIR)
        n_dicom += 1
        # A missing PatientID or StudyInstanceUID never merges strangers: the file's own
        # study (or, failing that, the file itself) stands for the unknown value.
        study_key = study_uid or f"file:{path}"
        patient_key = str(ds.get("PatientID", "") or "") or f"study:{study_key}"
        series_key = series_uid or f"file:{path}"
        if series_key in series:
            continue
        subject = subjects.setdefault(patient_key, len(subjects))
        study = studies.setdefault(study_key, len(studies))
        series[series_key] = SeriesFacts(
            subject=subject,
            study=study,
            modality=_modality(ds.get("Modality")),
            body_part=_body_part(ds.get("BodyPartExamined")),
            manufacturer=_manufacturer(ds.get("Manufacturer")),
        )
    return DatasetFacts(series=tuple(series.values()), dicom_files=n_dicom)
