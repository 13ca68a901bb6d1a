"""Errors for bad imaging input, each with a one-line message fit for a job log.

The sandboxed job prints ``str(error)`` and exits non-zero, so every message names the
series or file and says what is wrong and what would fix it; no traceback ever reaches the
researcher (who cannot see the data to debug it).
"""

from __future__ import annotations


class KernelInputError(ValueError):
    """Base class: the input cannot be preprocessed as given."""


class SeriesError(KernelInputError):
    """A DICOM series is inconsistent (geometry, slices, pixel format)."""


class MissingSliceError(SeriesError):
    """Slice positions leave a gap that is a whole multiple of the series spacing."""


class MixedOrientationError(SeriesError):
    """Slices of one series do not share one ImageOrientationPatient."""


class NonUniformSpacingError(SeriesError):
    """Slice positions are not equally spaced (and the gaps are not missing slices)."""


class NotOneStackError(SeriesError):
    """Slices or frames of one series are not one spatial stack: two at one position, or
    several stacks, temporal positions (phases) or b-values of a multi-frame image."""


class SeriesTooLargeError(SeriesError):
    """The series' volume or its resampled grid would not fit in the job's memory."""


class UndecodableError(SeriesError):
    """Pixel data uses a compressed transfer syntax that no installed decoder can read."""


class SuvError(KernelInputError):
    """PET tags needed for SUVbw (QIBA) are missing or not in a supported state."""


def is_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` must end the job rather than fail one series: an interrupt or an
    exit. Every other exception, also those that do not derive from Exception, is about the
    series at hand: a decoder written in Rust (pylibjpeg-rle) turns its panic on a hostile
    frame into ``pyo3_runtime.PanicException``, a BaseException, which passed every
    ``except Exception`` and ended the whole cohort with a traceback."""
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)
