"""int16 outputs (`tre.kernels.quantise`): within the bound of the float32 outputs, decoded by
real readers, in every format; the analytic range; the fallback; the manifest; the errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from tests.kernels.synth import chest_phantom, write_series
from tre.kernels.job import run
from tre.kernels.output_choices import DEFAULT_MAX_ERROR, check_max_error
from tre.kernels.params import PreprocessParams
from tre.kernels.pipeline import preprocess_array
from tre.kernels.quantise import (
    ERROR_STEPS,
    MAX_STEPS,
    output_range,
    plan,
    slope_for,
    stored_value_range,
)

RECIPES: list[dict[str, Any]] = [
    {"window": (-1000.0, 400.0)},
    {"window": (-1000.0, 400.0), "percentile_clip": (0.5, 99.5)},
    {"percentile_clip": (1.0, 99.0)},
    {},  # no clip at all: the range comes from the stored values
]


def _volume(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A phantom as int16 (signed CT), uint16 (unsigned with a -1024 intercept) or float32
    pixels, with per-slice rescale values that differ."""
    raw = chest_phantom((14, 40, 37), seed=seed)
    rng = np.random.default_rng(seed)
    nz = raw.shape[0]
    slopes = rng.uniform(0.9, 1.1, nz)
    if kind == "uint16":
        return (raw.astype(np.int32) + 1024).astype(np.uint16), slopes, rng.uniform(-1034.0, -1014.0, nz)
    if kind == "float32":
        return raw.astype(np.float32) + rng.normal(0, 3, raw.shape).astype(np.float32), slopes, np.zeros(nz)
    return raw, slopes, rng.uniform(-10.0, 10.0, nz)


def _clip_of(params: PreprocessParams, result: Any) -> tuple[tuple[float, float], float, float]:
    clip_lo, clip_hi, shift, scale = params.clip_scale()
    if result.percentile_values is not None:
        clip_lo, clip_hi = (
            max(clip_lo, result.percentile_values[0]),
            min(clip_hi, result.percentile_values[1]),
        )
    return (clip_lo, clip_hi), shift, scale


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("kind", ["int16", "uint16", "float32"])
def test_analytic_range_holds_every_value_and_int16_is_within_the_bound(
    kind: str, recipe: dict[str, Any]
) -> None:
    """The range the scale is chosen from needs no pass over the output: every float32 value
    the normalize pass writes lies in it (the clip, mean and std bound it; the stored values'
    range where the recipe does not clip). And the int16 output, decoded in float64 and in
    float32, is within the bound of the float32 output (the bound is the proof's 0.55 steps,
    the measured worst case about 0.5)."""
    raw, slopes, intercepts = _volume(kind, seed=len(recipe) + len(kind))
    spacing = (2.5, 0.7, 0.7)
    exact_params = PreprocessParams((1.2, 0.9, 0.8), **recipe)
    exact = preprocess_array(raw, slopes, intercepts, spacing, exact_params)
    clip, shift, scale = _clip_of(exact_params, exact)
    inv = 1.0 / exact.std
    h_range = stored_value_range(raw, slopes, intercepts) if not recipe else None
    lo, hi = output_range(clip, shift, scale, exact.mean, inv, h_range)
    assert math.isfinite(lo) and math.isfinite(hi)
    assert lo <= float(exact.image.min()) and float(exact.image.max()) <= hi
    for bound in (DEFAULT_MAX_ERROR, 1e-2, 3e-4):
        params = PreprocessParams((1.2, 0.9, 0.8), output_dtype="int16", max_error=bound, **recipe)
        got = preprocess_array(raw, slopes, intercepts, spacing, params)
        q = got.quantisation
        assert q is not None and q.dtype == "int16" and q.fallback is None
        assert got.image.dtype == np.int16 and got.image.shape == exact.image.shape
        assert q.slope == slope_for(bound) and q.slope * ERROR_STEPS <= bound
        decoded64 = got.image.astype(np.float64) * q.slope + q.intercept
        decoded32 = got.image.astype(np.float32) * np.float32(q.slope) + np.float32(q.intercept)
        err64 = float(np.max(np.abs(decoded64 - exact.image)))
        err32 = float(np.max(np.abs(decoded32.astype(np.float64) - exact.image)))
        assert err64 <= bound and err32 <= bound, (err64, err32, bound)
        assert err64 >= 0.3 * q.slope  # rounding, not a finer grid: the step is the bound's
        assert int(np.abs(got.image.astype(np.int32)).max()) <= MAX_STEPS // 2 + 2  # clamp never reached


def test_too_fine_a_bound_falls_back_to_float32_exactly() -> None:
    raw, slopes, intercepts = _volume("int16", 3)
    args = (raw, slopes, intercepts, (2.5, 0.7, 0.7))
    recipe = {"window": (-1000.0, 400.0), "percentile_clip": (0.5, 99.5)}
    exact = preprocess_array(*args, PreprocessParams((1.0, 1.0, 1.0), **recipe))
    got = preprocess_array(
        *args, PreprocessParams((1.0, 1.0, 1.0), output_dtype="int16", max_error=1e-6, **recipe)
    )
    q = got.quantisation
    assert q is not None and q.dtype == "float32" and q.fallback == "range-too-wide"
    assert got.image.dtype == np.float32 and np.array_equal(got.image, exact.image)  # never worse
    entry = q.manifest_entry()
    assert (
        entry["requested"] == "int16"
        and entry["dtype"] == "float32"
        and entry["fallback"] == "range-too-wide"
    )


def test_plan_refuses_ranges_int16_cannot_hold() -> None:
    s = slope_for(1e-3)
    assert plan(-1.0, 5.0, 1e-3).dtype == "int16"
    assert plan(-1.0, -1.0 + s * MAX_STEPS, 1e-3).dtype == "int16"
    assert plan(-1.0, -1.0 + s * (MAX_STEPS + 2), 1e-3).fallback == "range-too-wide"
    assert plan(150.0, 160.0, 1e-3).fallback == "range-too-wide"  # |values| / slope too large
    assert plan(-math.inf, 1.0, 1e-3).fallback == "range-not-finite"
    assert plan(math.nan, 1.0, 1e-3).fallback == "range-not-finite"
    nan_input = np.zeros((2, 3, 3), dtype=np.float32)
    nan_input[1, 1, 1] = np.nan
    assert not all(math.isfinite(v) for v in stored_value_range(nan_input, np.ones(2), np.zeros(2)))
    assert output_range((-1000.0, 400.0), -1000.0, 1 / 1400, 0.3, 2.0, (math.nan, math.nan))[0] == -math.inf


def test_float_pixels_with_nan_fall_back_instead_of_converting_nan() -> None:
    raw = np.full((4, 8, 8), 100.0, dtype=np.float32)
    raw[2, 3, 3] = np.nan
    params = PreprocessParams((1.0, 1.0, 1.0), window=(-1000.0, 400.0), output_dtype="int16")
    got = preprocess_array(raw, np.ones(4), np.zeros(4), (1.0, 1.0, 1.0), params)
    assert got.quantisation is not None and got.quantisation.fallback == "range-not-finite"
    assert got.image.dtype == np.float32


@pytest.mark.parametrize("bad", [0.0, -1e-3, math.nan, math.inf, 1e-9, 0.5, 7.0])
def test_bounds_that_make_no_sense_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="max error must be a number from"):
        check_max_error(bad)
    with pytest.raises(ValueError, match="max error"):
        PreprocessParams((1.0, 1.0, 1.0), output_dtype="int16", max_error=bad)


def _dataset(root: Path) -> Path:
    """pydicom's CT_small.dcm (a real CT slice) as one series and a synthetic CT series."""
    data = root / "in"
    (data / "real").mkdir(parents=True)
    found = get_testdata_file("CT_small.dcm")
    assert found is not None
    shutil.copyfile(str(found), data / "real" / "CT_small.dcm")
    write_series(data / "synthetic", chest_phantom((10, 36, 34), seed=7), spacing_zyx=(2.5, 0.7, 0.8))
    return data


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(decoded values, stored values), z/y/x, through the format's own reader."""
    if path.name.endswith(".zarr.zip"):
        import zarr

        store = zarr.storage.ZipStore(path, mode="r")
        arr = zarr.open_array(store, mode="r")
        stored = np.asarray(arr[...])
        attrs = dict(arr.attrs)
        store.close()
        if "scale_factor" in attrs:
            return stored.astype(np.float64) * attrs["scale_factor"] + attrs["add_offset"], stored
        return stored.astype(np.float64), stored
    img = nib.load(path)
    return img.get_fdata().transpose(2, 1, 0), np.asarray(img.dataobj.get_unscaled()).transpose(2, 1, 0)


@pytest.mark.parametrize("fmt", ["nii.gz", "nii", "zarr"])
def test_cohort_job_int16_outputs_decode_within_the_bound(tmp_path: Path, fmt: str) -> None:
    """The real cohort job, float32 and int16 runs of one recipe: every series' int16 output,
    decoded by nibabel (NIfTI scl_slope/scl_inter) or from zarr's scale_factor/add_offset,
    within the bound of its float32 output; the manifest and sidecar say how it was stored."""
    data = _dataset(tmp_path)
    base = [
        "--input",
        str(data),
        "--spacing",
        "0.8",
        "0.8",
        "1.5",
        "--window",
        "-1000",
        "400",
        "--format",
        fmt,
    ]
    assert run([*base, "--output", str(tmp_path / "f32")]) == 0
    assert run([*base, "--output", str(tmp_path / "i16"), "--dtype", "int16", "--max-error", "0.002"]) == 0
    m32 = json.loads((tmp_path / "f32" / "manifest.json").read_text())
    m16 = json.loads((tmp_path / "i16" / "manifest.json").read_text())
    assert m16["recipe"]["output_dtype"] == "int16" and m16["recipe"]["max_error"] == 0.002
    assert "output_dtype" not in m32["recipe"]  # float32 recipes are as before (still resumable)
    assert len(m16["series"]) == 2
    for uid, entry in m16["series"].items():
        assert entry["status"] == "ok" and entry["dtype"] == "int16"
        q = entry["quantisation"]
        assert q["requested"] == "int16" and q["dtype"] == "int16" and q["max_error"] == 0.002
        assert "fallback" not in q and q["scl_slope"] == slope_for(0.002)
        volume = tmp_path / "i16" / entry["outputs"][0]["path"]
        exact_volume = tmp_path / "f32" / m32["series"][uid]["outputs"][0]["path"]
        decoded, stored = _read(volume)
        exact, exact_stored = _read(exact_volume)
        assert stored.dtype == np.int16 and exact_stored.dtype == np.float32
        assert decoded.shape == exact.shape
        assert float(np.max(np.abs(decoded - exact))) <= 0.002
        side = json.loads(volume.with_name(volume.name.split(".")[0] + ".json").read_text())
        assert side["output"]["dtype"] == "int16" and side["output"]["quantisation"] == q
        assert entry["outputs"][0]["bytes"] < m32["series"][uid]["outputs"][0]["bytes"]
    if fmt != "zarr":
        entry = next(iter(m16["series"].values()))
        img = nib.load(tmp_path / "i16" / entry["outputs"][0]["path"])
        assert img.get_data_dtype() == np.int16
        # nibabel moves scl_slope / scl_inter from the header to the data's proxy when loading
        assert float(img.dataobj.slope) == entry["quantisation"]["scl_slope"]
        assert float(img.dataobj.inter) == entry["quantisation"]["scl_inter"]
    else:
        entry = next(iter(m16["series"].values()))
        with zipfile.ZipFile(tmp_path / "i16" / entry["outputs"][0]["path"]) as zf:
            meta = json.loads(zf.read("zarr.json"))
        assert meta["data_type"] == "int16"
        assert meta["attributes"]["scale_factor"] == entry["quantisation"]["scl_slope"]


def test_cohort_job_records_the_fallback_per_series_and_resumes(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    argv = ["--input", str(data), "--output", str(tmp_path / "out"), "--spacing", "0.8", "0.8", "1.5"]
    argv += ["--window", "-1000", "400", "--percentile-clip", "0.5", "99.5", "--format", "nii"]
    argv += ["--dtype", "int16", "--max-error", "1e-5"]  # ranges of a few std need ~1e5 steps
    assert run(argv) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for entry in manifest["series"].values():
        assert entry["dtype"] == "float32"
        assert entry["quantisation"]["fallback"] == "range-too-wide"
        assert entry["quantisation"]["requested"] == "int16"
        img = nib.load(tmp_path / "out" / entry["outputs"][0]["path"])
        assert img.get_data_dtype() == np.float32
    assert run(argv) == 0  # the same recipe again: every series resumed
    again = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert again["series"] == manifest["series"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--dtype", "int16", "--max-error", "0"], "max error must be a number from"),
        (["--dtype", "int16", "--max-error", "nan"], "max error must be a number from"),
        (["--dtype", "int16", "--max-error", "-0.001"], "max error must be a number from"),
        (["--dtype", "int16", "--max-error", "2"], "max error must be a number from"),
        (["--max-error", "0.001"], "applies to --dtype int16 only"),
        (["--dtype", "int8"], "invalid choice"),
    ],
)
def test_job_refuses_bad_dtype_arguments_in_one_line(tmp_path: Path, extra: list[str], words: str) -> None:
    (tmp_path / "in").mkdir()
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--spacing", "1", "1", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "tre.kernels.job", *argv, *extra], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--dtype", "int16", "--max-error", "0"], "max error must be a number from"),
        (["--dtype", "int16", "--max-error", "inf"], "max error must be a number from"),
        (["--max-error", "0.01"], "applies to --dtype int16 only"),
        (["--dtype", "float64"], "float32, int16"),
    ],
)
def test_cli_refuses_bad_dtype_arguments_in_one_line(extra: list[str], words: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "preprocess", "-d", "x", "-p", "y", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr


def test_cli_job_command_carries_the_dtype_the_job_parses() -> None:
    from tre.cli.preprocess import job_command
    from tre.kernels.job import _parser

    cmd = job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu", "zarr", 4, "int16", 0.002)
    args = _parser().parse_args(cmd[3:])
    assert args.dtype == "int16" and args.max_error == 0.002 and args.format == "zarr"
    default = job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu")
    assert "--dtype" not in default and _parser().parse_args(default[3:]).dtype == "float32"


@pytest.mark.parametrize("fmt", ["nii", "zarr"])
def test_writer_stores_int16_only_with_a_scaling(tmp_path: Path, fmt: str) -> None:
    """The stored type follows the scaling, not the array's type: an int16 array without one
    is written as float32 (as before this option), a scaling needs an int16 array."""
    from tre.kernels.writers import write_volume

    image = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    (tmp_path / "a").mkdir()
    plain = write_volume(tmp_path / "a", "s", image, np.eye(4), fmt, 1)
    decoded, stored = _read(tmp_path / "a" / plain.name)
    assert stored.dtype == np.float32 and np.array_equal(decoded, image)
    (tmp_path / "b").mkdir()
    scaled = write_volume(tmp_path / "b", "s", image, np.eye(4), fmt, 1, scaling=(0.5, -1.0))
    decoded, stored = _read(tmp_path / "b" / scaled.name)
    assert stored.dtype == np.int16 and np.array_equal(decoded, image * 0.5 - 1.0)
    with pytest.raises(ValueError, match="int16 output"):
        write_volume(tmp_path / "b", "t", image.astype(np.float32), np.eye(4), fmt, 1, scaling=(0.5, 0.0))
