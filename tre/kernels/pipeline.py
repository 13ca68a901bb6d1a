"""The preprocessing recipe, written once over a backend (CPU or CUDA kernels).

A backend resamples on the fly and exposes four passes: ``stats`` (reductions only),
``histogram`` and ``gather`` (exact foreground percentiles) and ``normalize`` (write the
cropped, z-scored float32 image). This module decides which passes run with which clip
values, so both devices follow the same recipe and match the float64 reference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np

from tre.kernels.buffers import OutputPool
from tre.kernels.grid import grid_tables, output_shape
from tre.kernels.memory import check_fits
from tre.kernels.params import NO_CLIP, PreprocessParams, PreprocessResult
from tre.kernels.quantise import Quantisation, output_range, plan, stored_value_range
from tre.kernels.stats import Stats

Device = Literal["cpu", "cuda"]
BBox = tuple[int, int, int, int, int, int]


class Backend(Protocol):
    """What a device must offer; see `tre.kernels.cpu.CpuBackend` for the reference one."""

    name: str

    def stats(
        self,
        clip: tuple[float, float],
        shift: float,
        scale: float,
        fg_thr: float,
        stat_shift: float,
        fg_only: bool,
    ) -> Stats: ...

    def histogram(
        self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, nbins: int
    ) -> np.ndarray: ...

    def gather(
        self, clip: tuple[float, float], fg_thr: float, vmin: float, bin_scale: float, wanted: np.ndarray
    ) -> np.ndarray: ...

    def normalize(
        self,
        bbox: BBox | None,
        clip: tuple[float, float],
        shift: float,
        scale: float,
        mean: float,
        inv_std: float,
        out: np.ndarray | None = None,
        quant: tuple[float, float] | None = None,
    ) -> np.ndarray: ...


def make_backend(
    device: Device,
    raw: np.ndarray,
    slopes: np.ndarray,
    intercepts: np.ndarray,
    spacing: tuple[float, float, float],
    target: tuple[float, float, float],
    workspace: Any | None = None,
) -> Backend:
    """Build the backend for ``device``; CUDA is imported only when asked for.

    ``workspace``: a `tre.kernels.cuda.Workspace` to reuse GPU buffers across volumes.
    """
    tables = grid_tables(raw.shape, spacing, target)
    if device == "cpu":
        from tre.kernels.cpu import CpuBackend

        return CpuBackend(raw, slopes, intercepts, tables)
    if device == "cuda":
        from tre.kernels.cuda import CudaBackend

        return CudaBackend(raw, slopes, intercepts, tables, workspace)
    raise ValueError(f"unknown device {device!r}; use cpu or cuda")


def _percentiles(
    backend: Backend, clip: tuple[float, float], thr: float, st: Stats, params: PreprocessParams
) -> tuple[float, float]:
    """Exact percentiles (NumPy 'linear' method) of foreground v via histogram + gather."""
    assert params.percentile_clip is not None
    nbins = params.histogram_bins
    span = st.vmax - st.vmin
    bin_scale = nbins / span if span > 0 else 0.0
    hist = backend.histogram(clip, thr, st.vmin, bin_scale, nbins)
    n = int(hist.sum())
    cum = np.cumsum(hist)
    ranks: list[tuple[int, float]] = []
    for q in params.percentile_clip:
        pos = q / 100.0 * (n - 1)
        lo = int(np.floor(pos))
        ranks.append((lo, pos - lo))
    needed = sorted({r + d for r, _ in ranks for d in (0, 1) if r + d < n})
    bins_of = {r: int(np.searchsorted(cum, r, side="right")) for r in needed}
    wanted = np.zeros(nbins, dtype=np.bool_)
    for b in bins_of.values():
        wanted[b] = True
    values = np.sort(backend.gather(clip, thr, st.vmin, bin_scale, wanted))
    before_in_wanted = np.cumsum(np.where(wanted, hist, 0)) - np.where(wanted, hist, 0)

    def value_at(r: int) -> float:
        b = bins_of[r]
        first_rank_of_bin = int(cum[b] - hist[b])
        return float(values[int(before_in_wanted[b]) + r - first_rank_of_bin])

    out: list[float] = []
    for r, frac in ranks:
        a = value_at(r)
        out.append(a if frac == 0.0 or r + 1 >= n else a + frac * (value_at(r + 1) - a))
    return out[0], out[1]


def output_shape_of(bbox: BBox | None, full_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shape of the normalized output: the crop box, or the whole grid without one."""
    if bbox is None:
        return full_shape
    return (bbox[1] - bbox[0], bbox[3] - bbox[2], bbox[5] - bbox[4])


def plan_quantisation(
    params: PreprocessParams,
    clip: tuple[float, float],
    shift: float,
    scale: float,
    mean: float,
    inv_std: float,
    h_range: Callable[[], tuple[float, float]] | None,
    float_input: bool = False,
) -> Quantisation | None:
    """The int16 scale of this series' output (None when float32 was asked for).

    The range comes from the recipe's clip, mean and std, known before the normalize pass
    (`tre.kernels.quantise.output_range`): no pass of its own. Only when that leaves the
    range unbounded (no window, no percentile clip) or too wide for the bound is
    ``h_range()`` asked for the rescaled stored values' range (one pass over the input); and
    always for float pixel data (``float_input``), which could hold NaN (the cohort's loader
    refuses it, a direct caller may not have): no NaN may reach the int16 conversion."""
    if params.output_dtype != "int16":
        return None
    if float_input and h_range is not None:
        lo, hi = output_range(clip, shift, scale, mean, inv_std, h_range())
        return plan(lo, hi, params.max_error)
    lo, hi = output_range(clip, shift, scale, mean, inv_std)
    q = plan(lo, hi, params.max_error)
    if q.dtype == "int16" or h_range is None:
        return q
    lo, hi = output_range(clip, shift, scale, mean, inv_std, h_range())
    return plan(lo, hi, params.max_error)


def run_recipe(
    backend: Backend,
    params: PreprocessParams,
    full_shape: tuple[int, int, int],
    pool: OutputPool | None = None,
    h_range: Callable[[], tuple[float, float]] | None = None,
    float_input: bool = False,
) -> PreprocessResult:
    """Run the passes of ``params`` on ``backend``; timings per pass in the result.

    ``pool``: take the output buffer from it when one fits (`tre.kernels.buffers`); the
    caller gives the image back once nothing reads it any more. ``h_range``: the range of
    the rescaled stored values, asked for only when an int16 output needs it
    (`plan_quantisation`)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    clip_lo, clip_hi, shift, scale = params.clip_scale()
    thr = params.foreground_threshold
    pvals: tuple[float, float] | None = None
    if params.percentile_clip is None:
        stat_shift = 0.5 if params.window is not None else 0.0
        st = backend.stats((clip_lo, clip_hi), shift, scale, thr, stat_shift, False)
        bbox, fg, mean, std = st.bbox, st.foreground, st.mean, st.std
        timings["stats"] = time.perf_counter() - t0
    else:
        st = backend.stats((clip_lo, clip_hi), 0.0, 1.0, thr, 0.0, True)
        bbox, fg = st.bbox, st.foreground
        sel_thr = thr
        if fg == 0:  # nothing is foreground: percentiles and stats over every voxel
            sel_thr = -NO_CLIP
            st = backend.stats((clip_lo, clip_hi), 0.0, 1.0, sel_thr, 0.0, True)
        timings["stats"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        pvals = _percentiles(backend, (clip_lo, clip_hi), sel_thr, st, params)
        timings["percentiles"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        clip_lo, clip_hi = max(clip_lo, pvals[0]), min(clip_hi, pvals[1])
        st2 = backend.stats((clip_lo, clip_hi), 0.0, 1.0, sel_thr, 0.5 * (clip_lo + clip_hi), True)
        mean, std = st2.mean, st2.std
        timings["clipped_stats"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    inv = 1.0 / std if std > 0 else 1.0
    quant = plan_quantisation(params, (clip_lo, clip_hi), shift, scale, mean, inv, h_range, float_input)
    stored = quant is not None and quant.dtype == "int16"
    kind = np.dtype(np.int16 if stored else np.float32)
    shape = output_shape_of(bbox, full_shape)
    check_fits(f"the cropped output ({'x'.join(str(n) for n in shape)})", kind.itemsize * math.prod(shape))
    out = pool.take_as(shape, kind) if pool is not None else None
    constants = quant.kernel_constants if quant is not None and stored else None
    try:
        clip = (clip_lo, clip_hi)
        if out is None:
            image = backend.normalize(bbox, clip, shift, scale, mean, inv, quant=constants)
        else:
            image = backend.normalize(bbox, clip, shift, scale, mean, inv, out=out, quant=constants)
    except BaseException:
        if pool is not None and out is not None:
            pool.give(out)
        raise
    timings["normalize"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    return PreprocessResult(
        image=image,
        full_shape=full_shape,
        bbox=bbox,
        mean=mean,
        std=std,
        foreground_voxels=fg,
        percentile_values=pvals,
        timings_s=timings,
        quantisation=quant,
    )


# The stored-value types the kernels are compiled for (the job's warm-up and the image's
# Numba seed compile int16; uint16 and float32 compile once when first met).
KERNEL_DTYPES = (np.dtype(np.int16), np.dtype(np.uint16), np.dtype(np.float32))


def kernel_dtype(raw: np.ndarray) -> np.ndarray:
    """``raw`` in one of `KERNEL_DTYPES`: 8-bit and boolean values widened to 16 bits, any
    other type as float32.

    Why: Numba compiles the kernels anew for each input type, 20-30 s of CPU each on the
    dev machine, so a cohort holding 1-, 8- and 32-bit and float pixel data (a messy archive,
    or a hostile one) spent minutes compiling (four such series: 85 s). The kernels read
    every stored value as ``float32(v)``; converting first gives the same float32 values
    (round to nearest either way), so outputs are unchanged."""
    kind = raw.dtype
    if kind in KERNEL_DTYPES:
        return raw
    if kind == np.bool_ or kind == np.uint8:
        return raw.astype(np.uint16)
    if kind == np.int8:
        return raw.astype(np.int16)
    return raw.astype(np.float32)


def preprocess_array(
    raw: np.ndarray,
    slopes: np.ndarray,
    intercepts: np.ndarray,
    spacing: tuple[float, float, float],
    params: PreprocessParams,
    device: Device = "cpu",
    workspace: Any | None = None,
    pool: OutputPool | None = None,
) -> PreprocessResult:
    """Preprocess a stacked volume (z, y, x) with per-slice rescale slope/intercept.

    ``pool``: reuse output buffers across calls (`tre.kernels.buffers.OutputPool`); give
    each result's image back to it once it has been written."""
    if raw.ndim != 3:
        raise ValueError(f"expected a 3-D (z, y, x) volume, got shape {raw.shape}")
    if len(slopes) != raw.shape[0] or len(intercepts) != raw.shape[0]:
        raise ValueError("need one rescale slope and intercept per slice")
    if not raw.dtype.isnative:  # the compiled kernels take the machine's byte order only
        raw = raw.astype(raw.dtype.newbyteorder("="))
    raw = kernel_dtype(raw)
    # From the lengths alone, before the tables (24 bytes per output index and axis) exist: a
    # target spacing of 1e-6 mm asked for tables of gigabytes before the grid check ran.
    planned = output_shape(raw.shape, spacing, params.spacing)
    grid = "x".join(str(n) for n in planned)
    # Before the passes sweep it: a grid whose float32 output would not fit even cropped to a
    # quarter (a target spacing far finer than the scan) is refused; the exact output is
    # checked once the crop is known (run_recipe). From the lengths alone, before the tables
    # (24 bytes per output index and axis) exist: a target spacing of 1e-6 mm asked for
    # tables of gigabytes before the grid was checked.
    check_fits(f"the resampled grid ({grid}), cropped to a quarter,", math.prod(planned))
    check_fits(f"the resampled grid's tables ({grid})", 24 * sum(planned))
    tables_shape = grid_tables(raw.shape, spacing, params.spacing).shape
    backend = make_backend(
        device, raw, np.asarray(slopes), np.asarray(intercepts), spacing, params.spacing, workspace
    )

    def h_range() -> tuple[float, float]:
        return stored_value_range(raw, np.asarray(slopes), np.asarray(intercepts))

    return run_recipe(backend, params, tables_shape, pool, h_range, raw.dtype.kind == "f")
