"""Combining a pass's partial reductions into one result, always in the same order.

Kept apart from the kernels so the CPU (per-slice partials) and CUDA (per-block partials)
backends reduce through the same code, and so the order of the final float64 sum is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Mean/std of the selected voxels, foreground count, bbox and foreground value range."""

    count: int
    mean: float
    std: float
    foreground: int
    bbox: tuple[int, int, int, int, int, int] | None
    vmin: float
    vmax: float

    @staticmethod
    def from_sums(
        count: float,
        s: float,
        s2: float,
        stat_shift: float,
        foreground: int,
        bbox: tuple[int, int, int, int, int, int] | None,
        vmin: float,
        vmax: float,
    ) -> Stats:
        n = int(count)
        if n == 0:
            return Stats(0, 0.0, 0.0, foreground, bbox, vmin, vmax)
        m = s / n
        var = max(s2 / n - m * m, 0.0)
        return Stats(n, stat_shift + m, math.sqrt(var), foreground, bbox, vmin, vmax)

    @staticmethod
    def from_slices(sums: np.ndarray, ibox: np.ndarray, vrange: np.ndarray, stat_shift: float) -> Stats:
        """Combine per-output-slice partials (rows in slice order) from the CPU kernels."""
        count = s = s2 = 0.0
        for k in range(sums.shape[0]):  # fixed order: slice 0, 1, 2, ...
            count += sums[k, 0]
            s += sums[k, 1]
            s2 += sums[k, 2]
        has = np.flatnonzero(ibox[:, 0] > 0)
        fg = int(ibox[:, 0].sum())
        if has.size == 0:
            return Stats.from_sums(count, s, s2, stat_shift, 0, None, 0.0, 0.0)
        sel = ibox[has]
        bbox = (
            int(has[0]),
            int(has[-1]) + 1,
            int(sel[:, 1].min()),
            int(sel[:, 2].max()) + 1,
            int(sel[:, 3].min()),
            int(sel[:, 4].max()) + 1,
        )
        vmin = float(vrange[has, 0].min())
        vmax = float(vrange[has, 1].max())
        return Stats.from_sums(count, s, s2, stat_shift, fg, bbox, vmin, vmax)
