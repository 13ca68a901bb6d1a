"""Output grid of an axis-aligned resampling and the per-axis interpolation tables.

Every backend (CPU kernels, CUDA kernels, the float64 reference, the benchmark's baselines)
samples the *same* grid, so their outputs are comparable voxel for voxel: output voxel ``k``
along an axis sits at ``k * target`` mm from the centre of input voxel 0, and the grid stops
at the last position inside the input (no extrapolation, no padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Tolerates the float error of e.g. 299 * 2.5 / 1.0 so exact multiples keep their last voxel.
_EPS = 1e-6


def output_length(n_in: int, spacing: float, target: float) -> int:
    """Number of output samples along one axis (at least 1)."""
    if n_in < 1 or not (0 < spacing < math.inf) or not (0 < target < math.inf):
        raise ValueError(f"bad axis: n={n_in} spacing={spacing} target={target}")
    extent = (n_in - 1) * spacing / target
    if not extent < 2**62:  # far beyond any memory; the caller's memory check refuses it
        return 2**62
    return int(math.floor(extent + _EPS)) + 1


def output_shape(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], target: tuple[float, float, float]
) -> tuple[int, int, int]:
    """Output shape (z, y, x) for an input of ``shape`` and ``spacing`` resampled to ``target``."""
    return (
        output_length(shape[0], spacing[0], target[0]),
        output_length(shape[1], spacing[1], target[1]),
        output_length(shape[2], spacing[2], target[2]),
    )


@dataclass(frozen=True)
class AxisTable:
    """For each output index: lower input index ``i0``, upper ``i1`` and weight of ``i1``."""

    i0: np.ndarray  # int64
    i1: np.ndarray  # int64
    w: np.ndarray  # float64 in [0, 1]


def axis_table(n_in: int, spacing: float, target: float) -> AxisTable:
    """Linear-interpolation table along one axis (computed in float64, once per volume)."""
    n_out = output_length(n_in, spacing, target)
    coord = np.arange(n_out, dtype=np.float64) * (target / spacing)
    coord = np.minimum(coord, n_in - 1)
    if n_in == 1:
        zeros = np.zeros(n_out, dtype=np.int64)
        return AxisTable(zeros, zeros.copy(), np.zeros(n_out, dtype=np.float64))
    i0 = np.minimum(np.floor(coord).astype(np.int64), n_in - 2)
    return AxisTable(i0, i0 + 1, coord - i0)


@dataclass(frozen=True)
class GridTables:
    """The three axis tables of one resampling, in (z, y, x) order."""

    z: AxisTable
    y: AxisTable
    x: AxisTable

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.z.w), len(self.y.w), len(self.x.w))


def grid_tables(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], target: tuple[float, float, float]
) -> GridTables:
    """Interpolation tables for resampling ``shape``/``spacing`` to ``target`` spacing."""
    return GridTables(
        axis_table(shape[0], spacing[0], target[0]),
        axis_table(shape[1], spacing[1], target[1]),
        axis_table(shape[2], spacing[2], target[2]),
    )
