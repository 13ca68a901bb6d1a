"""Imaging preprocessing for jobs that run next to the data (CT, MR, PET).

DICOM series loading with geometry checks (`load_series`, `load_all`), PET SUVbw
(`to_suvbw`), and fused resample + window + z-score + crop kernels on CPU (Numba) or
CUDA (numba-cuda) through `preprocess_array`; whole cohorts (overlapped decode, kernels and
writing, manifest with hashes, resume) through `run_cohort`. The sandboxed ``tre preprocess``
job runs ``python -m tre.kernels.job``. Importing this package does not import Numba; the kernels
compile (or load from the Numba cache) on first use. See docs/kernels.md.
"""

from tre.kernels.cohort import CohortOptions, CohortSummary, run_cohort
from tre.kernels.dicom import Series, discover_series, load_all, load_series
from tre.kernels.errors import (
    KernelInputError,
    MissingSliceError,
    MixedOrientationError,
    NonUniformSpacingError,
    SeriesError,
    SuvError,
    UndecodableError,
)
from tre.kernels.params import PreprocessParams, PreprocessResult
from tre.kernels.pipeline import preprocess_array
from tre.kernels.suv import suvbw_factor, to_suvbw

__all__ = [
    "CohortOptions",
    "CohortSummary",
    "KernelInputError",
    "MissingSliceError",
    "MixedOrientationError",
    "NonUniformSpacingError",
    "PreprocessParams",
    "PreprocessResult",
    "Series",
    "SeriesError",
    "SuvError",
    "UndecodableError",
    "discover_series",
    "load_all",
    "load_series",
    "preprocess_array",
    "run_cohort",
    "suvbw_factor",
    "to_suvbw",
]
