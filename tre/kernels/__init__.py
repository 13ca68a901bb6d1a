"""Imaging preprocessing for jobs that run next to the data (CT, MR, PET).

DICOM series loading with geometry checks (`load_series`, `load_all`), PET SUVbw
(`to_suvbw`), and fused resample + window + z-score + crop kernels on CPU (Numba) or
CUDA (numba-cuda) through `preprocess_array`; whole cohorts (overlapped decode, kernels and
writing, manifest with hashes, resume) through `run_cohort`. The sandboxed ``tre preprocess``
job runs ``python -m tre.kernels.job``. Importing this package imports nothing heavy: names
load on first use, so the log screen and the CLI import `tre.kernels.progress` without
NumPy or pydicom; the kernels compile (or load from the Numba cache) on first use. See
docs/kernels.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tre.kernels.cohort import CohortOptions, CohortSummary, run_cohort
    from tre.kernels.dicom import (
        Series,
        SliceHeader,
        discover_headers,
        discover_series,
        load_all,
        load_series,
    )
    from tre.kernels.errors import (
        KernelInputError,
        MissingSliceError,
        MixedOrientationError,
        NonUniformSpacingError,
        NotOneStackError,
        SeriesError,
        SuvError,
        UndecodableError,
    )
    from tre.kernels.params import PreprocessParams, PreprocessResult
    from tre.kernels.pipeline import preprocess_array
    from tre.kernels.suv import suvbw_factor, to_suvbw

_WHERE: dict[str, str] = {
    "CohortOptions": "tre.kernels.cohort",
    "CohortSummary": "tre.kernels.cohort",
    "KernelInputError": "tre.kernels.errors",
    "MissingSliceError": "tre.kernels.errors",
    "MixedOrientationError": "tre.kernels.errors",
    "NonUniformSpacingError": "tre.kernels.errors",
    "NotOneStackError": "tre.kernels.errors",
    "PreprocessParams": "tre.kernels.params",
    "PreprocessResult": "tre.kernels.params",
    "Series": "tre.kernels.dicom",
    "SeriesError": "tre.kernels.errors",
    "SuvError": "tre.kernels.errors",
    "UndecodableError": "tre.kernels.errors",
    "SliceHeader": "tre.kernels.dicom",
    "discover_headers": "tre.kernels.dicom",
    "discover_series": "tre.kernels.dicom",
    "load_all": "tre.kernels.dicom",
    "load_series": "tre.kernels.dicom",
    "preprocess_array": "tre.kernels.pipeline",
    "run_cohort": "tre.kernels.cohort",
    "suvbw_factor": "tre.kernels.suv",
    "to_suvbw": "tre.kernels.suv",
}


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'tre.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "CohortOptions",
    "CohortSummary",
    "KernelInputError",
    "MissingSliceError",
    "MixedOrientationError",
    "NonUniformSpacingError",
    "NotOneStackError",
    "PreprocessParams",
    "PreprocessResult",
    "Series",
    "SeriesError",
    "SuvError",
    "UndecodableError",
    "SliceHeader",
    "discover_headers",
    "discover_series",
    "load_all",
    "load_series",
    "preprocess_array",
    "run_cohort",
    "suvbw_factor",
    "to_suvbw",
]
