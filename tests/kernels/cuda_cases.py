"""CUDA kernel checks, run in a separate process (see test_cuda.py).

Under NUMBA_ENABLE_CUDASIM=1 (CI, no GPU) the volumes stay tiny because the simulator runs
every GPU thread as a Python thread; on a real GPU (benchmarks/gpu_check.sh) the larger
cases run too. The environment variable must be set before Numba is first imported,
which is why this module is never collected by the main test process.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.kernels.synth import chest_phantom, write_series
from tre.kernels.buffers import OutputPool
from tre.kernels.params import PreprocessParams
from tre.kernels.pipeline import preprocess_array
from tre.kernels.reference import preprocess_reference

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
HU_TOL = 1e-3


def _err(got_image: np.ndarray, ref_image: np.ndarray, ref_std: float, params: PreprocessParams) -> float:
    unit = ref_std * (
        params.window[1] - params.window[0] if params.window and not params.percentile_clip else 1.0
    )
    return float(np.max(np.abs(got_image.astype(np.float64) - ref_image)) * unit)


CASES = [
    ((3, 5, 6), (2.1, 1.0, 1.2), (1.3, 0.9, 1.1), {"window": (-1000.0, 400.0)}),
    ((2, 4, 7), (1.5, 0.8, 0.6), (1.0, 1.1, 0.9), {"window": None}),
    (
        (3, 6, 5),
        (2.0, 1.0, 1.0),
        (1.5, 1.2, 1.3),
        {"window": (-1000.0, 400.0), "percentile_clip": (0.5, 99.5)},
    ),
]
if not SIM:
    CASES += [
        ((61, 97, 83), (2.5, 0.7, 0.7), (1.0, 1.0, 1.0), {"window": (-1000.0, 400.0)}),
        ((40, 64, 70), (1.25, 0.9, 0.9), (1.0, 0.8, 1.1), {"window": None, "percentile_clip": (0.5, 99.5)}),
    ]


@pytest.mark.parametrize(("shape", "spacing", "target", "recipe"), CASES)
def test_cuda_matches_reference(shape, spacing, target, recipe) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(sum(shape))
    raw = chest_phantom(shape, seed=1) if shape[0] > 10 else rng.integers(-1024, 2500, shape).astype(np.int16)
    slopes = rng.uniform(0.8, 1.2, shape[0])
    intercepts = rng.uniform(-1050.0, -1000.0, shape[0])
    params = PreprocessParams(spacing=target, **recipe)
    got = preprocess_array(raw, slopes, intercepts, spacing, params, device="cuda")
    ref = preprocess_reference(raw, slopes, intercepts, spacing, params)
    assert got.image.dtype == np.float32
    assert got.bbox == ref.bbox and got.foreground_voxels == ref.foreground_voxels
    unit = params.window[1] - params.window[0] if params.window and not params.percentile_clip else 1.0
    assert abs(got.mean - ref.mean) * unit <= 1e-4 and abs(got.std - ref.std) * unit <= 1e-4
    if ref.percentile_values is not None:
        assert got.percentile_values == pytest.approx(ref.percentile_values, abs=1e-3)
    assert _err(got.image, ref.image, ref.std, params) <= HU_TOL
    pool = OutputPool()
    pool.give(np.full(got.image.size + 7, np.nan, dtype=np.float32))
    again = preprocess_array(raw, slopes, intercepts, spacing, params, device="cuda", pool=pool)
    assert again.mean == got.mean and again.std == got.std  # deterministic reductions
    assert pool.reused == 1 and np.array_equal(again.image, got.image)  # into a reused buffer


def test_cuda_and_cpu_agree() -> None:
    raw = chest_phantom((3, 6, 6) if SIM else (50, 120, 110), seed=4)
    params = PreprocessParams(spacing=(1.2, 0.9, 0.8), window=(-1000.0, 400.0))
    args = (raw, np.ones(raw.shape[0]), np.full(raw.shape[0], -1024.0), (2.5, 0.7, 0.7), params)
    cpu = preprocess_array(*args, device="cpu")
    gpu = preprocess_array(*args, device="cuda")
    assert cpu.bbox == gpu.bbox
    assert np.max(np.abs(cpu.image - gpu.image)) * gpu.std * 1400 <= HU_TOL


def test_job_on_cuda(tmp_path: Path) -> None:
    from tre.kernels.job import run

    write_series(tmp_path / "in", chest_phantom((3, 6, 6)), spacing_zyx=(2.0, 1.5, 1.5))
    argv = [
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--spacing",
        "1.5",
        "1.5",
        "1.5",
    ]
    assert run([*argv, "--window", "-1000", "400", "--device", "cuda"]) == 0
    assert len(list((tmp_path / "out" / "series").glob("*.nii.gz"))) == 1


@pytest.mark.parametrize("recipe", [c[3] for c in CASES])
def test_cuda_int16_outputs_within_the_bound(recipe) -> None:  # type: ignore[no-untyped-def]
    """The CUDA int16 pass (`normalize_int16_kernel`): decoded within the bound of the float32
    output on the same device, with the CPU's scale (both plan from the same statistics)."""
    raw = chest_phantom((3, 6, 6) if SIM else (50, 120, 110), seed=5)
    slopes = np.ones(raw.shape[0])
    intercepts = np.full(raw.shape[0], -1024.0)
    params = PreprocessParams(spacing=(1.2, 0.9, 0.8), **recipe)
    quantised = PreprocessParams(spacing=(1.2, 0.9, 0.8), output_dtype="int16", max_error=1e-3, **recipe)
    args = (raw, slopes, intercepts, (2.5, 0.7, 0.7))
    exact = preprocess_array(*args, params, device="cuda")
    got = preprocess_array(*args, quantised, device="cuda")
    q = got.quantisation
    assert q is not None and q.dtype == "int16" and got.image.dtype == np.int16
    decoded = got.image.astype(np.float64) * q.slope + q.intercept
    assert np.max(np.abs(decoded - exact.image)) <= q.max_error
    cpu = preprocess_array(*args, quantised, device="cpu")
    assert cpu.quantisation is not None and cpu.image.dtype == np.int16
    assert np.max(np.abs(cpu.image.astype(np.int32) - got.image)) <= 1  # rounding ties may differ
