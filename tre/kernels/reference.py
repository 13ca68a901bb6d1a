"""Float64 NumPy reference of the whole preprocessing recipe (slow, obviously correct).

Tests and the benchmark measure the Numba kernels against this. It is written for clarity
(whole-array NumPy, one stage after another) and shares with the kernels only the grid
tables, which the tests check separately against ``scipy.ndimage.map_coordinates``.
"""

from __future__ import annotations

import numpy as np

from tre.kernels.grid import GridTables, grid_tables
from tre.kernels.params import PreprocessParams, PreprocessResult


def resample_hu(
    raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray, tables: GridTables
) -> np.ndarray:
    """Trilinear resample of per-slice rescaled intensities, float64, full output grid."""
    slopes = np.asarray(slopes, dtype=np.float64)
    intercepts = np.asarray(intercepts, dtype=np.float64)
    out = np.empty(tables.shape, dtype=np.float64)
    ty, tx = tables.y, tables.x
    wy = ty.w[:, None]
    wx = tx.w[None, :]
    for k in range(tables.shape[0]):
        a, b, w = tables.z.i0[k], tables.z.i1[k], tables.z.w[k]
        sa = raw[a].astype(np.float64) * slopes[a] + intercepts[a]
        sb = raw[b].astype(np.float64) * slopes[b] + intercepts[b]
        s = (1.0 - w) * sa + w * sb
        s = (1.0 - wy) * s[ty.i0] + wy * s[ty.i1]
        out[k] = (1.0 - wx) * s[:, tx.i0] + wx * s[:, tx.i1]
    return out


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int, int, int] | None:
    if not mask.any():
        return None
    box: list[int] = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        box += [int(idx[0]), int(idx[-1]) + 1]
    return (box[0], box[1], box[2], box[3], box[4], box[5])


def preprocess_reference(
    raw: np.ndarray,
    slopes: np.ndarray,
    intercepts: np.ndarray,
    spacing: tuple[float, float, float],
    params: PreprocessParams,
) -> PreprocessResult:
    """The recipe of `PreprocessParams`, in float64; ``image`` is float64 here."""
    tables = grid_tables(raw.shape, spacing, params.spacing)
    hu = resample_hu(raw, slopes, intercepts, tables)
    fg = hu > params.foreground_threshold
    clip_lo, clip_hi, shift, scale = params.clip_scale()
    v = (np.clip(hu, clip_lo, clip_hi) - shift) * scale
    pvals: tuple[float, float] | None = None
    if params.percentile_clip is not None:
        values = v[fg] if fg.any() else v.ravel()
        plo, phi = (float(p) for p in np.percentile(values, params.percentile_clip))
        pvals = (plo, phi)
        v = np.clip(v, plo, phi)
        sel = v[fg] if fg.any() else v.ravel()
        mean, std = float(sel.mean()), float(sel.std())
    else:
        mean, std = float(v.mean()), float(v.std())
    inv = 1.0 / std if std > 0 else 1.0
    z = (v - mean) * inv
    box = _bbox(fg)
    if box is not None:
        z = z[box[0] : box[1], box[2] : box[3], box[4] : box[5]]
    return PreprocessResult(
        image=z,
        full_shape=tables.shape,
        bbox=box,
        mean=mean,
        std=std,
        foreground_voxels=int(fg.sum()),
        percentile_values=pvals,
    )
