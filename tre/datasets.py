"""Dataset registration: a folder of DICOM files, summarised once when it is added.

The summary (modalities, series, file count, bytes) lets admins and DAC members see what a
grant exposes without opening the data.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from tre.errors import TreError


def summarise_dicom_folder(
    path: Path, max_files: int = 100_000, data_dir: Path | None = None
) -> dict[str, Any]:
    """The folder's summary. ``data_dir`` is the server's own data folder (TRE_DATA_DIR), named
    when the path is no folder: the fixed "/srv/tre as root" sent an admin whose server keeps
    its data elsewhere (TRE_DATA_DIR set, or not root) to the wrong place (newcomer round 21)."""
    if not path.is_dir():
        where = (
            f"its data folder is {data_dir}" if data_dir is not None else "the data folder, /srv/tre as root"
        )
        raise TreError(
            f"dataset path {path} is not a folder on the server: put the DICOM files in a folder "
            f"on the API's host ({where}) and give its absolute path"
        )
    modalities: Counter[str] = Counter()
    series: set[str] = set()
    studies: set[str] = set()
    n_dicom = n_other = total = 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        if n_dicom + n_other >= max_files:
            break
        total += f.stat().st_size
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, AttributeError, TypeError, KeyError):
            n_other += 1
            continue
        n_dicom += 1
        modalities[str(ds.get("Modality", "unknown"))] += 1
        if "SeriesInstanceUID" in ds:
            series.add(str(ds.SeriesInstanceUID))
        if "StudyInstanceUID" in ds:
            studies.add(str(ds.StudyInstanceUID))
    if n_dicom == 0:
        raise TreError(f"no DICOM files found under {path}")
    return {
        "dicom_files": n_dicom,
        "other_files": n_other,
        "bytes": total,
        "modalities": dict(sorted(modalities.items())),
        "series": len(series),
        "studies": len(studies),
    }
