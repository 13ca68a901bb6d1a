"""The in-sandbox entry point: files written, geometry preserved, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.kernels.synth import chest_phantom, rotation, write_series
from tests.kernels.test_suv import pet_tags
from tre.kernels.dicom import load_all
from tre.kernels.job import run
from tre.kernels.params import PreprocessParams
from tre.kernels.reference import preprocess_reference

REPO = Path(__file__).resolve().parents[2]


def test_writes_nifti_and_sidecar_matching_reference(tmp_path: Path) -> None:
    raw = chest_phantom((8, 30, 26))
    rot = rotation((0.3, 1.0, 0.2), 15.0)
    write_series(tmp_path / "in" / "ct", raw, spacing_zyx=(2.5, 0.7, 0.8), rot=rot)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "in"), "--output", str(out), "--spacing", "1", "1.2", "2"]
    assert run([*argv, "--window", "-1000", "400"]) == 0
    (series,) = load_all(tmp_path / "in")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["names"] == {"series-00001": series.series_uid}  # the UID is the manifest's only
    meta = json.loads((out / "series" / "series-00001.json").read_text())
    img = nib.load(out / "series" / "series-00001.nii.gz")
    data = np.asarray(img.dataobj)
    assert data.dtype == np.float32
    assert list(data.shape) == meta["shape_xyz"]
    assert meta["series"] == "series-00001" and series.series_uid not in json.dumps(meta)
    assert meta["spacing_zyx_mm"] == [2.0, 1.2, 1.0]
    assert meta["window"] == [-1000.0, 400.0]
    assert meta["software"]["numba"] and meta["timing_s"]["preprocess"] > 0
    params = PreprocessParams(spacing=(2.0, 1.2, 1.0), window=(-1000.0, 400.0))
    ref = preprocess_reference(series.raw, series.slopes, series.intercepts, series.spacing, params)
    assert meta["bbox_zyx"] == {"start": list(ref.bbox[::2]), "stop": list(ref.bbox[1::2])}  # type: ignore[index]
    assert meta["stats"]["mean"] == pytest.approx(ref.mean, abs=1e-7)
    assert np.max(np.abs(data.transpose(2, 1, 0) - ref.image)) * ref.std * 1400 <= 1e-3
    # Geometry: output voxel (i, j, k) lands where the resampled grid says, in RAS.
    z0, y0, x0 = ref.bbox[0], ref.bbox[2], ref.bbox[4]  # type: ignore[index]
    i, j, k = 2, 3, 1
    lps = series.origin + (x0 + i) * 1.0 * rot[:, 0] + (y0 + j) * 1.2 * rot[:, 1] + (z0 + k) * 2.0 * rot[:, 2]
    ras = img.affine @ np.array([i, j, k, 1.0])
    assert ras[:3] == pytest.approx(lps * np.array([-1, -1, 1]), abs=1e-4)
    assert int(img.header["sform_code"]) == 1


def test_pet_series_is_converted_to_suv(tmp_path: Path) -> None:
    raw = np.random.default_rng(1).integers(0, 20000, size=(4, 10, 10)).astype(np.int16)
    write_series(
        tmp_path / "in",
        raw,
        spacing_zyx=(3.0, 2.0, 2.0),
        modality="PT",
        slopes=[0.5] * 4,
        intercepts=[0.0] * 4,
        extra=pet_tags(),
    )
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--spacing", "2", "2", "2"]
    assert run([*argv, "--foreground-threshold", "0.5"]) == 0
    (meta_path,) = (tmp_path / "out" / "series").glob("*.json")
    meta = json.loads(meta_path.read_text())
    assert meta["units_before_normalisation"] == "SUVbw (g/mL)"
    assert meta["suvbw_factor"] == pytest.approx(75_000.0 / (370e6 * 2.0 ** (-3600.0 / 6586.2)))


def test_pet_missing_tags_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = np.ones((2, 4, 4), dtype=np.int16)
    write_series(
        tmp_path / "in", raw, spacing_zyx=(3.0, 2.0, 2.0), modality="PT", extra=pet_tags(Units="CNTS")
    )
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--spacing", "2", "2", "2"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    # The log names the reason code only (the reason quotes a tag value); the manifest has it.
    assert err == "error: the series could not be preprocessed: suv-tags 1 (reasons in manifest.json)\n"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (entry,) = manifest["series"].values()
    assert entry["reason"].startswith("PET Units is CNTS, not BQML")


def test_bad_series_exit_2_or_skip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_series(tmp_path / "in" / "good", chest_phantom((3, 8, 8)), spacing_zyx=(2.0, 1.0, 1.0))
    write_series(
        tmp_path / "in" / "gap",
        chest_phantom((4, 8, 8)),
        spacing_zyx=(2.0, 1.0, 1.0),
        positions_mm=[0, 2, 6, 8],
    )
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--spacing", "1", "1", "1"]
    assert run([*argv, "--fail-fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing-slices" in err and "--fail-fast" in err
    assert " missing (spacing" not in err and str(tmp_path) not in err  # the reason stays in the manifest
    assert run(argv) == 0  # a cohort: the bad series is recorded, the good one written
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    failed = [e for e in manifest["series"].values() if e["status"] == "failed"]
    assert len(failed) == 1 and "missing" in failed[0]["reason"]
    assert manifest["counts"] == {"ok": 1, "failed": 1}
    assert len(list((tmp_path / "out" / "series").glob("*.nii.gz"))) == 1


def test_empty_input_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    base = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--spacing", "1", "1", "1"]
    assert run(base) == 2
    assert capsys.readouterr().err.startswith("error: no DICOM image series found")
    assert run([*base, "--window", "400", "-1000"]) == 2
    assert "lo < hi" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path: Path) -> None:
    """`python -m tre.kernels.job` is what the sandbox runs: exercise it as a process once."""
    write_series(tmp_path / "in", chest_phantom((3, 8, 8)), spacing_zyx=(2.0, 1.0, 1.0))
    cmd = [
        sys.executable,
        "-m",
        "tre.kernels.job",
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "o"),
        "--spacing",
        "1",
        "1",
        "1",
        "--window",
        "-1000",
        "400",
        "--percentile-clip",
        "0.5",
        "99.5",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "tre-progress: 0/1 series done, 0 failed",
        "tre-series: 1/1 ok",
        "tre-progress: 1/1 series done, 0 failed",
        "done 1 series: ok 1 resumed 0 failed 0 (details in manifest.json)",
    ]
    assert len(list((tmp_path / "o").rglob("*.json"))) == 2  # sidecar + manifest


_PLUGINS = """
import json, sys
if sys.argv[1] == "job":
    from tre.kernels.job import without_downloaders
    without_downloaders()
from pydicom.pixels.decoders.base import get_decoder, _PIXEL_DATA_DECODERS
import tre.kernels.cohort  # the job's own imports
plugins = {uid: sorted(get_decoder(uid).available_plugins) for uid in _PIXEL_DATA_DECODERS}
modules = sorted({name.split(".")[0] for name, mod in sys.modules.items() if mod is not None})
print(json.dumps({"plugins": plugins, "modules": modules}))
"""


def test_job_process_skips_download_modules_and_keeps_every_decoder() -> None:
    """The job's process does not import requests (pydicom's example-data downloader; start-up
    time), and pydicom offers it the same decoding plugins for every transfer syntax as a
    process that imported everything."""

    def probe(mode: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", _PLUGINS, mode], capture_output=True, text=True, check=True, timeout=120
        )
        return json.loads(done.stdout)

    job, full = probe("job"), probe("full")
    assert "requests" in full["modules"]  # what the test is about: pydicom does import it
    assert "requests" not in job["modules"] and "urllib3" not in job["modules"]
    assert job["plugins"] == full["plugins"]
    assert any(job["plugins"].values())
