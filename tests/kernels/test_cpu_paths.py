"""Code paths of the CPU kernels that the random small cases of test_cpu_kernels miss."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from tre.kernels.cpu import STACK_COLS, pair_groups
from tre.kernels.grid import grid_tables
from tre.kernels.params import PreprocessParams
from tre.kernels.pipeline import preprocess_array
from tre.kernels.reference import preprocess_reference

RECIPES = [
    dict(window=(-1000.0, 400.0)),
    dict(window=(-1000.0, 400.0), percentile_clip=(0.5, 99.5)),
]


@pytest.mark.parametrize("recipe", RECIPES, ids=["window", "window+pct"])
@pytest.mark.parametrize("nx", [STACK_COLS + 3, 37])
def test_rows_wider_than_the_stack_scratch(recipe: dict, nx: int) -> None:
    """Input rows wider than the stack scratch take the heap-scratch branch: same results."""
    rng = np.random.default_rng(nx)
    raw = rng.integers(-1024, 1500, size=(3, 6, nx)).astype(np.int16)
    slopes = rng.uniform(0.5, 2.0, 3)
    intercepts = rng.uniform(-1100.0, -900.0, 3)
    spacing = (2.0, 0.8, 0.7)
    params = PreprocessParams(spacing=(1.3, 1.0, 0.9), **recipe)  # type: ignore[arg-type]
    got = preprocess_array(raw, slopes, intercepts, spacing, params)
    ref = preprocess_reference(raw, slopes, intercepts, spacing, params)
    assert got.bbox == ref.bbox
    assert got.foreground_voxels == ref.foreground_voxels
    assert got.image.shape == ref.image.shape
    unit = ref.std * (1400.0 if "percentile_clip" not in recipe else 1.0)
    assert float(np.max(np.abs(got.image.astype(np.float64) - ref.image))) * unit <= 1e-3


@pytest.mark.parametrize("recipe", RECIPES, ids=["window", "window+pct"])
def test_many_output_slices_per_pair_of_input_slices(recipe: dict) -> None:
    """Thick slices (5 mm -> 0.45 mm: ~11 output slices blend each pair of input slices, which
    the passes walk rows outer, slices inner) with a bright block whose foreground starts and
    ends inside a pair: the float64 reference's values, box and count, and the same bits for
    1 and 2 threads."""
    rng = np.random.default_rng(7)
    raw = rng.integers(-1024, -900, size=(6, 19, 23)).astype(np.int16)
    raw[2:4, 4:15, 3:20] = rng.integers(-200, 1500, size=(2, 11, 17))
    params = PreprocessParams(spacing=(0.45, 0.9, 0.8), **recipe)  # type: ignore[arg-type]
    args = (raw, np.ones(6), np.zeros(6), (5.0, 0.8, 0.7), params)
    ref = preprocess_reference(*args)
    before = numba.get_num_threads()
    try:
        got = preprocess_array(*args)
        numba.set_num_threads(1)
        one = preprocess_array(*args)
    finally:
        numba.set_num_threads(before)
    starts = set(pair_groups(grid_tables(raw.shape, args[3], params.spacing).z.i0).tolist())
    assert ref.bbox is not None and ref.bbox[0] not in starts and ref.bbox[1] not in starts
    assert got.bbox == ref.bbox and got.foreground_voxels == ref.foreground_voxels
    unit = ref.std * (1400.0 if "percentile_clip" not in recipe else 1.0)
    assert float(np.max(np.abs(got.image.astype(np.float64) - ref.image))) * unit <= 1e-3
    assert one.mean == got.mean and one.std == got.std and np.array_equal(one.image, got.image)
