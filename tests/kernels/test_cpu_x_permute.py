"""The in-plane x step's two ways (permutes on AVX-512, gathers elsewhere) give the same bits.

Why a test of its own: the random small volumes of test_cpu_kernels have rows too short for a
16-column permute block, and only the benchmark-sized grids of the other tests reach it; here
one plane is resampled both ways, on the same scratch, for in-plane steps whose blocks fit
(downsampling 0.7 -> 1 mm as in the benchmark, upsampling) and do not fit (3x downsampling),
with and without a crop's column offset (the normalize pass's tables)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from numba import njit

from tre.kernels import cpu
from tre.kernels.grid import axis_table


@njit(cache=False, fastmath=cpu._FM)  # the kernels' flags: the gather loop contracts to an FMA there too
def _plane_both_ways(raw, yi0, yi1, yw, xi0, xi1, xw, by_perm, by_gather):
    """Plane 0 of ``raw`` with the permute columns the kernels would choose, and with none;
    returns those columns."""
    scratch = numba.carray(cpu._stack_scratch(), (cpu.ROWS, cpu.STACK_COLS))
    perm = cpu._perm_columns(xi0, xi1)
    s = np.float32(1.5)
    b = np.float32(-1024.0)
    cpu._plane_rows(raw, 0, s, b, yi0, yi1, yw, xi0, xi1, xw, scratch, by_perm, perm)
    cpu._plane_rows(raw, 0, s, b, yi0, yi1, yw, xi0, xi1, xw, scratch, by_gather, 0)
    return perm


def _host_has_avx512() -> bool:
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("avx512f", False))


@pytest.mark.parametrize(
    ("spacing", "target", "x0", "fits"),
    [
        (0.7, 1.0, 0, True),  # the benchmark's in-plane step
        (0.7, 1.0, 37, True),  # a crop's column offset
        (1.0, 0.45, 5, True),  # upsampling
        (0.3, 1.0, 0, False),  # 16 columns span ~52 input columns: gathers only
    ],
)
def test_permute_and_gather_x_steps_agree(spacing: float, target: float, x0: int, fits: bool) -> None:
    rng = np.random.default_rng(int(spacing * 100) + x0)
    ny, nx = 23, 301
    raw = rng.integers(-1024, 3000, size=(1, ny, nx)).astype(np.int16)
    ty = axis_table(ny, 0.8, 1.0)
    tx = axis_table(nx, spacing, target)
    xi0 = tx.i0[x0:].astype(np.int32)
    xi1 = tx.i1[x0:].astype(np.int32)
    xw = np.ascontiguousarray(tx.w[x0:], dtype=np.float32)
    yw = np.ascontiguousarray(ty.w, dtype=np.float32)
    shape = (ty.i0.shape[0], xi0.shape[0])
    by_perm = np.full(shape, np.nan, dtype=np.float32)
    by_gather = np.full(shape, np.nan, dtype=np.float32)
    perm = _plane_both_ways(raw, ty.i0, ty.i1, yw, xi0, xi1, xw, by_perm, by_gather)
    if fits and _host_has_avx512():
        assert perm == shape[1] - shape[1] % cpu.PERM_LANES > 0
    else:
        assert perm == 0
    assert np.array_equal(by_perm, by_gather)  # bit for bit, and no column left unwritten
    hu = raw[0].astype(np.float64) * 1.5 - 1024.0
    rows = hu[ty.i0] * (1 - ty.w[:, None]) + hu[ty.i1] * ty.w[:, None]
    want = rows[:, tx.i0[x0:]] * (1 - tx.w[x0:]) + rows[:, tx.i1[x0:]] * tx.w[x0:]
    assert float(np.max(np.abs(by_perm - want))) < 2e-3  # float32 of values up to ~3500
