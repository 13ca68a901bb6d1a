"""What a researcher may choose about a preprocessing job's stored output (dtype, error bound),
and the checks of those choices.

Apart from `tre.kernels.quantise` (which needs numpy) because ``tre preprocess`` checks the
choices before it submits, and the CLI should not import numpy for every command (~0.15 s of
each command's start); the job asks the same questions through the same functions.
"""

from __future__ import annotations

import math
from typing import Literal

OutputDtype = Literal["float32", "int16"]
DTYPES: tuple[str, ...] = ("float32", "int16")
DEFAULT_MAX_ERROR = 1e-3
# The bounds a researcher may ask for, in units of the z-score (one standard deviation of
# the series). Below MIN the float32 output's own rounding (~1e-7 relative, ~1e-6 absolute
# for the values of a z-scored volume) is of the same order: the bound would not mean what it
# says. Above MAX a step is more than a fifth of a standard deviation: most of the image's
# contrast would be gone, which is not a preprocessing choice but a mistake.
MIN_MAX_ERROR = 1e-6
MAX_MAX_ERROR = 0.1


def check_max_error(bound: float) -> float:
    """The bound as a float, or ValueError with the reason (one line) when it makes no sense."""
    value = float(bound)
    if not math.isfinite(value) or not MIN_MAX_ERROR <= value <= MAX_MAX_ERROR:
        raise ValueError(
            f"max error must be a number from {MIN_MAX_ERROR:g} to {MAX_MAX_ERROR:g} "
            f"(in standard deviations of the z-scored output), got {bound!r}"
        )
    return value


def output_max_error(dtype: str, asked: float | None) -> float:
    """The error bound of an int16 output (`DEFAULT_MAX_ERROR` when none was asked);
    ValueError for a bound with float32 (exact: a bound there would mean nothing, silently)
    or one that makes no sense (`check_max_error`). The job and ``tre preprocess`` both ask."""
    if asked is None:
        return DEFAULT_MAX_ERROR
    if dtype != "int16":
        raise ValueError("--max-error applies to --dtype int16 only (float32 outputs are exact)")
    return check_max_error(asked)


def check_dtype(dtype: str) -> OutputDtype:
    """The output dtype, or ValueError naming the choices."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown output dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return dtype  # type: ignore[return-value]
