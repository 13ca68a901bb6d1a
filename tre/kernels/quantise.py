"""Scaled-integer outputs: int16 voxels with a slope and intercept, within a stated error.

Why: a z-scored float32 output compresses to ~0.64 of its bytes with gzip (its low mantissa
bits are noise), and those bytes are what the cohort job writes and the disk measures. Many
pipelines store such outputs as scaled integers instead: NIfTI's ``scl_slope`` /
``scl_inter`` with int16 data (every NIfTI reader applies them), or a zarr int16 array with
CF ``scale_factor`` / ``add_offset`` attributes. The researcher opts in per job and sets the
largest absolute error they accept after decoding (`DEFAULT_MAX_ERROR`).

How the scale is chosen (per series, `plan`):

* The slope ``s`` comes from the bound alone, as large as the bound allows
  (``s = bound / ERROR_STEPS``, rounded down to a float32): a coarser step is fewer distinct
  values, hence smaller files, and the bound is all the researcher asked for.
* The output's range ``[lo, hi]`` is known before the normalize pass runs, without a pass of
  its own (`output_range`): every output voxel is ``(window(clip(h)) - mean) * inv_std``,
  and clip bounds ``h`` by the recipe's clip values (the window, or the percentile values);
  where the recipe has no finite clip (no window, no percentile clip) the stored values'
  range, rescaled, bounds ``h`` instead, since trilinear interpolation only forms convex
  combinations of rescaled input values. The intercept is the range's midpoint, so the
  stored integers are ``round((x - intercept) / s)``, centred on 0.
* If ``(hi - lo) / s`` or ``max(|lo|, |hi|) / s`` exceeds `MAX_STEPS`, or the range is not finite,
  the series is written as float32 and the manifest says why (`FALLBACK_REASONS`): never
  silently worse than the bound.

The error bound, proved (a test measures it on real and synthetic series): the kernels
compute ``t = x * (1 / s) + (-intercept / s)`` in float32 and store ``rint(t)``. `plan`
accepts a range only when both ``(hi - lo) / s`` and ``max(|lo|, |hi|) / s`` are at most
`MAX_STEPS` (< 2**16), so ``|x| / s``, ``|intercept| / s`` < 2**16 and ``|t|`` < 2**15 steps. The
float32 roundings on the way, in steps: the constant ``1 / s`` (relative 2**-24 of ``|x| /
s``: 2**-8), the constant ``intercept / s`` (2**-8), the product (2**-8), the sum (2**-9),
and the kernel's own ``x`` (float32, and under fast-math possibly reassociated into the
product: 2**-8), and on CUDA the ``floor(t + 0.5)`` that stands for ``rint`` (2**-9);
together below 0.02, so ``|rint(t) - t_exact| <= 0.52`` and a reader
decoding in float64 is within ``0.52 * s`` of the float32 output. A reader decoding in
float32 rounds ``q * s`` (< 2**15 steps: 2**-9) and the sum (< 2**16 steps: 2**-8): within
``0.526 * s``. `ERROR_STEPS` = 0.55 covers both, so the decoded value is within the bound of
the float32 output. The intercept is the float32 value written to the header, so the
decoding uses exactly the constant the kernel used; ``|t|`` stays below 32764, so the
kernel's clamp to [-32767, 32767] (there only so that no input can make the conversion
overflow) never changes a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tre.kernels.output_choices import OutputDtype

ERROR_STEPS = 0.55  # worst error after decoding, in slopes (see the module docstring)
INT16_MAX = 32767
# Steps the range may span: symmetric around 0 so that rint(t) never leaves [-32767, 32767]
# (a margin of 4 steps for the float32 roundings and the float32 intercept).
MAX_STEPS = 2 * INT16_MAX - 8
# Why a series requested as int16 was written as float32 (the manifest's fixed words).
FALLBACK_REASONS = ("range-too-wide", "range-not-finite")
# Relative widening of the analytic range for the kernels' float32 roundings of v and x (a
# few ulps, 2**-23 each): the range must contain every value the kernel computes.
RANGE_SLACK = 2.0**-18


@dataclass(frozen=True)
class Quantisation:
    """How one series' output is stored: ``dtype`` int16 with ``slope`` / ``intercept``
    (decoded = stored * slope + intercept, within ``max_error`` of the float32 output), or
    float32 (exact) with ``fallback`` saying why int16 was not possible."""

    dtype: OutputDtype
    max_error: float
    slope: float = 1.0
    intercept: float = 0.0
    fallback: str | None = None
    range: tuple[float, float] | None = None  # the output's range the scale was chosen from

    @property
    def kernel_constants(self) -> tuple[float, float]:
        """(1 / slope, -intercept / slope) as float32 values: the kernels store rint(x * a + b)."""
        return float(np.float32(1.0 / self.slope)), float(np.float32(-self.intercept / self.slope))

    def manifest_entry(self) -> dict[str, Any]:
        """The per-series record (manifest and sidecar): fixed words and numbers only."""
        entry: dict[str, Any] = {
            "requested": "int16",
            "dtype": self.dtype,
            "max_error": self.max_error,
            "scl_slope": self.slope,
            "scl_inter": self.intercept,
            "decode": "value = stored * scl_slope + scl_inter",
        }
        if self.fallback is not None:
            entry["fallback"] = self.fallback
        if self.range is not None and all(math.isfinite(v) for v in self.range):
            entry["output_range"] = list(self.range)
        return entry


def slope_for(bound: float) -> float:
    """The largest float32 slope whose worst decoding error (`ERROR_STEPS`) is within ``bound``."""
    s = np.float32(bound / ERROR_STEPS)
    while float(s) * ERROR_STEPS > bound:  # rounding to float32 went up: one ulp down
        s = np.nextafter(s, np.float32(0.0))
    return float(s)


def plan(lo: float, hi: float, bound: float) -> Quantisation:
    """The int16 scale for outputs in [lo, hi], or a float32 fallback (see module docstring)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return Quantisation("float32", bound, fallback="range-not-finite", range=(lo, hi))
    slope = slope_for(bound)
    if (hi - lo) / slope > MAX_STEPS or max(abs(lo), abs(hi)) / slope > MAX_STEPS:
        return Quantisation("float32", bound, fallback="range-too-wide", range=(lo, hi))
    intercept = float(np.float32(0.5 * (lo + hi)))
    return Quantisation("int16", bound, slope, intercept, range=(lo, hi))


def _widen(lo: float, hi: float) -> tuple[float, float]:
    pad = RANGE_SLACK * max(abs(lo), abs(hi), 1.0)
    return lo - pad, hi + pad


def output_range(
    clip: tuple[float, float],
    shift: float,
    scale: float,
    mean: float,
    inv_std: float,
    h_range: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Bounds of every value the normalize pass writes: ``((clip(h) - shift) * scale - mean) *
    inv_std`` with ``h`` in ``h_range`` (the rescaled stored values' range; None: unknown),
    widened for float32 rounding. Infinite when neither the clip nor ``h_range`` bounds h."""
    c_lo, c_hi = float(np.float32(clip[0])), float(np.float32(clip[1]))
    if h_range is not None and not all(math.isfinite(h) for h in h_range):
        return (-math.inf, math.inf)  # NaN or infinite input values: no bound holds
    if h_range is not None:
        c_lo, c_hi = max(c_lo, h_range[0]), min(c_hi, h_range[1])
        if c_lo > c_hi:  # every value is clipped to one end
            c_lo = c_hi = min(max(h_range[0], float(np.float32(clip[0]))), float(np.float32(clip[1])))
    from tre.kernels.params import NO_CLIP

    if abs(c_lo) >= NO_CLIP or abs(c_hi) >= NO_CLIP:
        return (-math.inf, math.inf)
    c_lo, c_hi = _widen(c_lo, c_hi)
    m, inv = float(np.float32(mean)), float(np.float32(inv_std))
    ends = [(((c - shift) * scale) - m) * inv for c in (c_lo, c_hi)]
    v_lo, v_hi = _widen(min(ends), max(ends))
    return v_lo, v_hi


def stored_value_range(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> tuple[float, float]:
    """Range of the rescaled stored values ``raw[z] * slopes[z] + intercepts[z]`` (one pass
    over the input, only when the recipe's clip leaves the output unbounded), widened for the
    kernels' float32 interpolation. NaN or infinite values give an infinite range."""
    if raw.size == 0:
        return (0.0, 0.0)
    flat = raw.reshape(raw.shape[0], -1)
    lo_raw = flat.min(axis=1).astype(np.float64)
    hi_raw = flat.max(axis=1).astype(np.float64)
    s = np.asarray(slopes, dtype=np.float64)
    b = np.asarray(intercepts, dtype=np.float64)
    ends = np.stack([lo_raw * s + b, hi_raw * s + b])
    if not np.all(np.isfinite(ends)):
        return (-math.inf, math.inf)
    return _widen(float(ends.min()), float(ends.max()))
