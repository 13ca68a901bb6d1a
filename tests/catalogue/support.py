"""Test data for the catalogue: synthetic DICOM series (headers only, real files pydicom
writes and reads), and policies with the catalogue rules a test needs."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[2]
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_series(
    folder: Path,
    patient_id: str,
    study_uid: str,
    modality: str,
    body_part: str,
    manufacturer: str = "ACME MEDICAL",
    files: int = 1,
) -> str:
    """Write one series of ``files`` instances; returns its SeriesInstanceUID."""
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientID = patient_id
        ds.PatientName = f"Synthetic^{patient_id}"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.Modality = modality
        ds.BodyPartExamined = body_part
        ds.Manufacturer = manufacturer
        ds.InstanceNumber = n + 1
        ds.save_as(folder / f"{series_uid}-{n}.dcm", enforce_file_format=True)
    return series_uid


def lung_cohort(folder: Path, subjects: range = range(1, 13)) -> None:
    """Subjects S01..S12: a CT CHEST study each; S01..S10 also a PT CHEST series in that
    study; S01..S09 also an MR HEAD study on a rare scanner.

    True counts: 12 subjects, 21 studies; CT 12/12, PT 10/10, MR 9/9; CHEST 12, HEAD 9.
    """
    for n in subjects:
        pid = f"S{n:02d}"
        study = generate_uid()
        write_series(folder / pid, pid, study, "CT", "CHEST", files=2)
        if n <= 10:
            write_series(folder / pid, pid, study, "PT", "CHEST")
        if n <= 9:
            write_series(folder / pid, pid, generate_uid(), "MR", "HEAD", manufacturer="RAREVENDOR")


def policy_folder(folder: Path) -> Path:
    """The repository's policies, plus ``exact`` (min_count 1, not rounded), ``coarse``
    (min_count 10 and round_to 5 from the sdc section alone) and ``unlisted``."""
    folder.mkdir(parents=True, exist_ok=True)
    for policy in (REPO / "policies").glob("*.yaml"):
        shutil.copyfile(policy, folder / policy.name)
    (folder / "exact.yaml").write_text(
        "name: exact\nversion: '1'\ncatalogue:\n  min_count: 1\n  round_to: 1\n", encoding="utf-8"
    )
    (folder / "coarse.yaml").write_text(
        "name: coarse\nversion: '1'\nsdc:\n  threshold: 10\n  rounding_base: 5\n", encoding="utf-8"
    )
    (folder / "unlisted.yaml").write_text(
        "name: unlisted\nversion: '1'\ncatalogue:\n  listed: false\n", encoding="utf-8"
    )
    return folder
