"""Code paths of the CPU kernels that the random small cases of test_cpu_kernels miss."""

from __future__ import annotations

import numpy as np
import pytest

from tre.kernels.cpu import STACK_COLS
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
