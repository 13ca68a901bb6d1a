"""The cohort job: many series in one run, per-series failures, manifest hashes, resume."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from tests.kernels.synth import chest_phantom, compress_files, write_series
from tre.kernels.job import run
from tre.kernels.progress import ProgressTracker, parse

REPO = Path(__file__).resolve().parents[2]
DONE = re.compile(r"^done \d+ series: ok \d+ resumed \d+ failed \d+ \(details in manifest\.json\)$")


def make_cohort(root: Path, n_good: int = 3, bad: bool = True) -> dict[str, np.ndarray]:
    """``n_good`` small CT series (distinct content) plus one with two slices at one position."""
    raws = {}
    for i in range(n_good):
        raw = chest_phantom((4 + i, 24, 20), seed=i)
        paths = write_series(root / f"s{i}", raw, spacing_zyx=(2.0, 0.9, 0.9), series_uid=f"1.2.826.0.1.{i}")
        raws[f"1.2.826.0.1.{i}"] = raw
        assert paths
    if bad:
        write_series(
            root / "dup",
            chest_phantom((3, 24, 20)),
            spacing_zyx=(2.0, 0.9, 0.9),
            positions_mm=[0.0, 2.0, 2.0],
            series_uid="1.2.826.0.1.99",
        )
    return raws


def argv(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--input",
        str(root),
        "--output",
        str(out),
        "--spacing",
        "1",
        "1",
        "1.5",
        "--window",
        "-1000",
        "400",
        *extra,
    ]


def job_process(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """`python -m tre.kernels.job` as the sandbox runs it, in a process of its own (its real
    stdout and stderr: what reaches the job log)."""
    cmd = [sys.executable, "-m", "tre.kernels.job", *argv(root, out)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_bad_series_never_fails_the_cohort_and_log_has_no_identifiers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_cohort(tmp_path / "in")
    out = tmp_path / "out"
    assert run(argv(tmp_path / "in", out)) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    tracker = ProgressTracker()
    assert all((item := parse(line)) is not None and tracker.accept(item) for line in lines[:-1]), lines
    assert lines[0] == "tre-progress: 0/4 series done, 0 failed"
    assert "tre-series: 4/4 failed: not-one-stack" in lines  # duplicate positions: a code, no text
    assert lines[-2] == "tre-progress: 4/4 series done, 1 failed"
    assert DONE.match(lines[-1]) and lines[-1].startswith("done 4 series: ok 3 resumed 0 failed 1")
    assert "1.2.826" not in captured.out + captured.err  # no UIDs, paths or reasons in the log
    m = manifest(out)
    assert m["counts"] == {"ok": 3, "failed": 1}
    bad = m["series"]["1.2.826.0.1.99"]
    assert bad["status"] == "failed" and "two slices at the same position" in bad["reason"]
    assert [m["series"][u]["index"] for u in sorted(m["series"])] == [1, 2, 3, 4]
    for uid in ("1.2.826.0.1.0", "1.2.826.0.1.1", "1.2.826.0.1.2"):
        entry = m["series"][uid]
        names = sorted(o["path"] for o in entry["outputs"])
        assert names == [f"{uid}.json", f"{uid}.nii.gz"]
        for o in entry["outputs"]:
            data = (out / o["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == o["sha256"] and len(data) == o["bytes"]
    assert not list(out.glob(".*partial"))


def test_resume_skips_by_hash_and_redoes_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_cohort(tmp_path / "in", bad=False)
    out = tmp_path / "out"
    assert run(argv(tmp_path / "in", out)) == 0
    first = manifest(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    capsys.readouterr()

    assert run(argv(tmp_path / "in", out)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "done 3 series: ok 0 resumed 3 failed 0 (details in manifest.json)"
    )
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == mtimes
    assert manifest(out)["series"] == first["series"]

    # A damaged output is detected by its hash and rewritten; the others are kept.
    victim = out / "1.2.826.0.1.1.nii.gz"
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert run(argv(tmp_path / "in", out)) == 0
    assert "ok 1 resumed 2 failed 0" in capsys.readouterr().out.splitlines()[-1]
    entry = manifest(out)["series"]["1.2.826.0.1.1"]
    nii = next(o for o in entry["outputs"] if o["path"].endswith(".nii.gz"))
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == nii["sha256"]

    # Another recipe: nothing is reused.
    assert run([*argv(tmp_path / "in", out)[:-2], "-500", "500"]) == 0
    assert "ok 3 resumed 0 failed 0" in capsys.readouterr().out.splitlines()[-1]


def test_killed_job_resumes_without_partial_outputs(tmp_path: Path) -> None:
    """SIGKILL the real job process after its first finished series, then run it again."""
    make_cohort(tmp_path / "in", n_good=6, bad=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tre.kernels.job", *argv(tmp_path / "in", out), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        if line.startswith("tre-progress: 1/6"):
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline
    proc.wait(timeout=60)
    m = manifest(out)
    finished = {uid for uid, e in m["series"].items() if e["status"] == "ok"}
    assert 1 <= len(finished) < 6
    written = {p.name.removesuffix(".nii.gz") for p in out.glob("*.nii.gz")}
    assert finished <= written  # a finished series has its files; nothing else is trusted

    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    resumed = int(re.search(r"resumed (\d+)", last).group(1))  # type: ignore[union-attr]
    assert resumed >= len(finished) and "failed 0" in last
    assert manifest(out)["counts"] == {"ok": 6}
    assert not list(out.glob(".*partial"))


@pytest.mark.parametrize("fmt", ["nii", "zarr"])
def test_other_formats_hold_the_same_values(tmp_path: Path, fmt: str) -> None:
    if fmt == "zarr":
        pytest.importorskip("zarr")
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    assert run(argv(tmp_path / "in", tmp_path / "gz")) == 0
    assert run([*argv(tmp_path / "in", tmp_path / "o"), "--format", fmt]) == 0
    ref_img = nib.load(tmp_path / "gz" / "1.2.826.0.1.0.nii.gz")
    ref = np.asarray(ref_img.dataobj)
    if fmt == "nii":
        img = nib.load(tmp_path / "o" / "1.2.826.0.1.0.nii")
        assert np.array_equal(np.asarray(img.dataobj), ref)
        assert np.array_equal(img.affine, ref_img.affine)
    else:
        import zarr

        store = zarr.storage.ZipStore(str(tmp_path / "o" / "1.2.826.0.1.0.zarr.zip"), mode="r")
        arr = zarr.open_array(store, mode="r")
        assert arr.dtype == np.float32 and arr.attrs["axes"] == ["z", "y", "x"]
        assert np.array_equal(arr[...], ref.transpose(2, 1, 0))
        assert np.allclose(np.asarray(arr.attrs["affine_ras_xyz"]), ref_img.affine)
        store.close()
    side = json.loads((tmp_path / "o" / "1.2.826.0.1.0.json").read_text())
    assert side["output"]["format"] == fmt


def test_compressed_cohort_matches_uncompressed(tmp_path: Path) -> None:
    """The same volume stored plain, RLE, JPEG 2000 and JPEG-LS gives identical outputs."""
    pytest.importorskip("openjpeg")
    pytest.importorskip("jpeg_ls")
    raw = chest_phantom((5, 40, 36), seed=9)
    codecs = [None, RLELossless, JPEG2000Lossless, JPEGLSLossless]
    for i, ts in enumerate(codecs):
        paths = write_series(
            tmp_path / "in" / f"s{i}", raw, spacing_zyx=(2.0, 0.8, 0.8), series_uid=f"1.2.3.{i}"
        )
        if ts:
            compress_files(paths, ts)
    # A corrupt JPEG 2000 slice: that series alone fails, with the undecodable reason.
    bad = write_series(tmp_path / "in" / "bad", raw[:2], spacing_zyx=(2.0, 0.8, 0.8), series_uid="1.2.3.666")
    compress_files(bad, JPEG2000Lossless)
    ds = pydicom.dcmread(bad[0])
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])  # SOC, SIZ, then nothing valid
    ds.save_as(bad[0], enforce_file_format=True)
    out = tmp_path / "out"
    assert run(argv(tmp_path / "in", out)) == 0
    m = manifest(out)
    assert m["counts"] == {"ok": 4, "failed": 1}
    assert "cannot be decoded" in m["series"]["1.2.3.666"]["reason"]
    volumes = [np.asarray(nib.load(p).dataobj) for p in sorted(out.glob("*.nii.gz"))]
    assert len(volumes) == 4
    for v in volumes[1:]:
        assert np.array_equal(v, volumes[0])


def test_cuda_cohort_under_simulator_matches_cpu(tmp_path: Path) -> None:
    """The cohort job with --device cuda (kernel warm-up thread included), on Numba's CUDA
    simulator in a child process; its outputs match the CPU job's."""
    pytest.importorskip("numba.cuda")
    make_cohort(tmp_path / "in", n_good=2, bad=True)
    assert run(argv(tmp_path / "in", tmp_path / "cpu")) == 0
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "tre.kernels.job",
        *argv(tmp_path / "in", tmp_path / "gpu"),
        "--device",
        "cuda",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("done 3 series: ok 2 resumed 0 failed 1")
    for uid in ("1.2.826.0.1.0", "1.2.826.0.1.1"):
        a = np.asarray(nib.load(tmp_path / "cpu" / f"{uid}.nii.gz").dataobj)
        b = np.asarray(nib.load(tmp_path / "gpu" / f"{uid}.nii.gz").dataobj)
        assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-4
        side = json.loads((tmp_path / "gpu" / f"{uid}.json").read_text())
        assert side["device"] == "cuda"


def test_missing_zarr_is_refused_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without zarr (blocked for real in sys.modules) the job stops before any work, in one line."""
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    saved = {k: v for k, v in sys.modules.items() if k == "zarr" or k.startswith("zarr.")}
    try:
        for k in saved:
            del sys.modules[k]
        sys.modules["zarr"] = None  # type: ignore[assignment]
        assert run([*argv(tmp_path / "in", tmp_path / "o"), "--format", "zarr"]) == 2
    finally:
        del sys.modules["zarr"]
        sys.modules.update(saved)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: output format zarr needs the zarr package")
    assert not (tmp_path / "o" / "manifest.json").exists()
