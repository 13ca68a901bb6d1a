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

from egress_review.checks import CheckContext, run_checks
from tests.kernels.synth import chest_phantom, compress_files, write_series
from tre.kernels.job import run
from tre.kernels.progress import ProgressTracker, parse
from tre.kernels.writers import SUFFIX
from tre.policy import load_policy

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


def series_file(out: Path, uid: str, suffix: str = ".nii.gz") -> Path:
    """The output of series ``uid`` as a later job finds it: through the manifest, which
    alone maps a series to its pseudonym (the files are named ``series/series-NNNNN.*``)."""
    name = manifest(out)["series"][uid]["name"]
    return out / "series" / f"{name}{suffix}"


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
    # Named by pseudonym in sorted-UID order (the log's numbers); the map is the manifest's.
    assert m["names"] == {f"series-0000{i + 1}": uid for i, uid in enumerate(sorted(m["series"]))}
    assert bad["name"] == "series-00004" and "outputs" not in bad
    for i, uid in enumerate(("1.2.826.0.1.0", "1.2.826.0.1.1", "1.2.826.0.1.2"), start=1):
        entry = m["series"][uid]
        assert entry["name"] == f"series-0000{i}"
        names = sorted(o["path"] for o in entry["outputs"])
        assert names == [f"series/series-0000{i}.json", f"series/series-0000{i}.nii.gz"]
        for o in entry["outputs"]:
            data = (out / o["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == o["sha256"] and len(data) == o["bytes"]
            assert b"1.2.826" not in data  # no UID in a sidecar (nor in a volume's header)
    top = sorted(p.name for p in out.iterdir())
    assert top == ["manifest.json", "series"]  # per-series files below, the manifest on top
    assert sorted(p.name for p in (out / "series").iterdir()) == [
        f"series-0000{i}{suffix}" for i in (1, 2, 3) for suffix in (".json", ".nii.gz")
    ]
    assert not list(out.rglob(".*partial"))
    # At the airlock: a sidecar holds no identifier (the identifier and UID checks pass);
    # the manifest, which maps names to UIDs, is flagged for them.
    policy = load_policy("default", REPO / "policies")
    for rel, flagged in (("series/series-00001.json", set()), ("manifest.json", {"pattern:dicom_uid"})):
        results = run_checks(out / rel, rel, policy, CheckContext())
        about_identifiers = {
            r.check: r.outcome for r in results if r.check == "identifiers" or r.check.startswith("pattern:")
        }
        assert about_identifiers.get("identifiers") == "pass", results
        assert {c for c, o in about_identifiers.items() if o != "pass"} == flagged, results


def test_resume_skips_by_hash_and_redoes_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_cohort(tmp_path / "in", bad=False)
    out = tmp_path / "out"
    assert run(argv(tmp_path / "in", out)) == 0
    first = manifest(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("series/*.nii.gz")}
    capsys.readouterr()

    assert run(argv(tmp_path / "in", out)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "done 3 series: ok 0 resumed 3 failed 0 (details in manifest.json)"
    )
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("series/*.nii.gz")} == mtimes
    assert manifest(out)["series"] == first["series"]

    # A damaged output is detected by its hash and rewritten; the others are kept.
    victim = series_file(out, "1.2.826.0.1.1")
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert run(argv(tmp_path / "in", out)) == 0
    assert "ok 1 resumed 2 failed 0" in capsys.readouterr().out.splitlines()[-1]
    entry = manifest(out)["series"]["1.2.826.0.1.1"]
    nii = next(o for o in entry["outputs"] if o["path"].endswith(".nii.gz"))
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == nii["sha256"]

    # The same rule as carrying another job's series (Manifest.own_outputs): an output that is
    # a link (here to an identical copy), or a record that is not an object, is redone.
    copy = tmp_path / "copy.nii.gz"
    copy.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(copy)
    m = manifest(out)
    m["series"]["1.2.826.0.1.2"]["outputs"].append("series/series-00003.nii.gz")
    (out / "manifest.json").write_text(json.dumps(m))
    assert run(argv(tmp_path / "in", out)) == 0
    assert "ok 2 resumed 1 failed 0" in capsys.readouterr().out.splitlines()[-1]
    assert not victim.is_symlink()

    # Another recipe: nothing is reused, but every series keeps its name.
    assert run([*argv(tmp_path / "in", out)[:-2], "-500", "500"]) == 0
    assert "ok 3 resumed 0 failed 0" in capsys.readouterr().out.splitlines()[-1]
    assert manifest(out)["names"] == first["names"]
    assert len(list(out.glob("series/*"))) == 6


def test_a_new_job_carries_on_an_ended_ones_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tre preprocess --resume`: the platform gives the new job a fresh /output and the ended
    job's folder read-only (/inputs/<id>); its finished series are copied, checked by hash,
    and keep their names; a damaged file, a file out of place or another recipe is not taken."""
    make_cohort(tmp_path / "in", bad=False)
    ended = tmp_path / "ended"
    assert run(argv(tmp_path / "in", ended)) == 0
    old = manifest(ended)
    # The job was cut short: one series never finished (no entry), one file was damaged
    # afterwards, and the job's own code planted an entry naming a file outside series/.
    del old["series"]["1.2.826.0.1.0"]
    damaged = series_file(ended, "1.2.826.0.1.1")
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0xFF
    damaged.write_bytes(bytes(data))
    planted = old["series"]["1.2.826.0.1.2"]
    (ended / "elsewhere.nii.gz").write_bytes(series_file(ended, "1.2.826.0.1.2").read_bytes())
    old["series"]["1.2.826.0.1.9"] = {**planted, "name": "series-00009"}
    old["names"]["series-00009"] = "1.2.826.0.1.9"
    old["series"]["1.2.826.0.1.9"]["outputs"] = [{**planted["outputs"][0], "path": "elsewhere.nii.gz"}]
    (ended / "manifest.json").write_text(json.dumps(old))
    capsys.readouterr()

    new = tmp_path / "new"
    assert run([*argv(tmp_path / "in", new), "--resume-from", str(ended)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "done 3 series: ok 2 resumed 1 failed 0 (details in manifest.json)"
    )
    assert manifest(new)["names"] == old["names"]  # every series keeps its name
    kept = series_file(new, "1.2.826.0.1.2")
    assert kept.read_bytes() == series_file(ended, "1.2.826.0.1.2").read_bytes()
    assert series_file(new, "1.2.826.0.1.1").read_bytes() != damaged.read_bytes()  # redone
    assert not (new / "elsewhere.nii.gz").exists() and "1.2.826.0.1.9" not in manifest(new)["series"]
    assert not list(new.rglob("*.partial"))

    # Another recipe takes nothing from it.
    other = tmp_path / "other"
    assert run([*argv(tmp_path / "in", other)[:-2], "-500", "500", "--resume-from", str(ended)]) == 0
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
    finished = {e["name"] for e in m["series"].values() if e["status"] == "ok"}
    assert 1 <= len(finished) < 6
    assert len(m["names"]) == 6  # every series was named before the first was written
    written = {p.name.removesuffix(".nii.gz") for p in out.glob("series/*.nii.gz")}
    assert finished <= written  # a finished series has its files; nothing else is trusted

    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    resumed = int(re.search(r"resumed (\d+)", last).group(1))  # type: ignore[union-attr]
    assert resumed >= len(finished) and "failed 0" in last
    assert manifest(out)["counts"] == {"ok": 6}
    assert manifest(out)["names"] == m["names"]  # a series written before the kill kept its name
    assert not list(out.rglob(".*partial"))


@pytest.mark.parametrize("fmt", ["nii", "zarr"])
def test_other_formats_hold_the_same_values(tmp_path: Path, fmt: str) -> None:
    if fmt == "zarr":
        pytest.importorskip("zarr")
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    assert run(argv(tmp_path / "in", tmp_path / "gz")) == 0
    assert run([*argv(tmp_path / "in", tmp_path / "o"), "--format", fmt]) == 0
    uid = "1.2.826.0.1.0"
    ref_img = nib.load(series_file(tmp_path / "gz", uid))
    ref = np.asarray(ref_img.dataobj)
    if fmt == "nii":
        img = nib.load(series_file(tmp_path / "o", uid, ".nii"))
        assert np.array_equal(np.asarray(img.dataobj), ref)
        assert np.array_equal(img.affine, ref_img.affine)
    else:
        import zarr

        store = zarr.storage.ZipStore(str(series_file(tmp_path / "o", uid, ".zarr.zip")), mode="r")
        arr = zarr.open_array(store, mode="r")
        assert arr.dtype == np.float32 and arr.attrs["axes"] == ["z", "y", "x"]
        assert np.array_equal(arr[...], ref.transpose(2, 1, 0))
        assert np.allclose(np.asarray(arr.attrs["affine_ras_xyz"]), ref_img.affine)
        store.close()
    side = json.loads(series_file(tmp_path / "o", uid, ".json").read_text())
    assert side["output"]["format"] == fmt
    assert side["series"] == "series-00001" and side["output"]["file"] == f"series-00001{SUFFIX[fmt]}"


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
    volumes = [np.asarray(nib.load(p).dataobj) for p in sorted(out.glob("series/*.nii.gz"))]
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
        a = np.asarray(nib.load(series_file(tmp_path / "cpu", uid)).dataobj)
        b = np.asarray(nib.load(series_file(tmp_path / "gpu", uid)).dataobj)
        assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-4
        side = json.loads(series_file(tmp_path / "gpu", uid, ".json").read_text())
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


def _hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("series/*")}


def test_a_changed_input_set_keeps_names_and_overwrites_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Between runs a series is added (sorting first) and another removed: every series
    keeps its name, a new one takes a number never used in the folder, and no finished
    output of another series is touched."""
    root, out = tmp_path / "in", tmp_path / "out"

    def add_series(folder: str, seed: int, uid: str) -> None:
        write_series(
            root / folder, chest_phantom((3, 24, 20), seed=seed), spacing_zyx=(2.0, 0.9, 0.9), series_uid=uid
        )

    make_cohort(root, n_good=3, bad=False)
    assert run(argv(root, out)) == 0
    first = manifest(out)
    before = _hashes(out)
    assert first["names"] == {
        "series-00001": "1.2.826.0.1.0",
        "series-00002": "1.2.826.0.1.1",
        "series-00003": "1.2.826.0.1.2",
    }

    # Added: a series whose UID sorts before all the others (it is the log's series 1 now).
    add_series("new", 7, "1.2.826.0.0.5")
    capsys.readouterr()
    assert run(argv(root, out)) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("done 4 series: ok 1 resumed 3 failed 0")
    second = manifest(out)
    assert second["names"] == {**first["names"], "series-00004": "1.2.826.0.0.5"}
    assert second["series"]["1.2.826.0.0.5"]["index"] == 1  # the log's number; the name is stable
    after = _hashes(out)
    assert {k: after[k] for k in before} == before  # nothing of the others rewritten

    # Removed: series 2's input goes, and a new series comes; the new one does not take
    # series-00002, whose files (still described by the manifest) stay as they were.
    for path in (root / "s1").iterdir():
        path.unlink()
    add_series("newer", 8, "1.2.826.0.1.15")
    assert run(argv(root, out)) == 0
    third = manifest(out)
    assert third["names"]["series-00005"] == "1.2.826.0.1.15"
    assert len(set(third["names"].values())) == len(third["names"]) == 5
    assert third["series"]["1.2.826.0.1.1"]["name"] == "series-00002"
    final = _hashes(out)
    assert {k: final[k] for k in before} == before
    assert set(final) == {f"series-0000{i}{s}" for i in range(1, 6) for s in (".json", ".nii.gz")}

    # The manifest lost (or an older version's): numbers on disk are never reused either.
    (out / "manifest.json").unlink()
    add_series("newest", 9, "1.2.826.0.1.16")
    assert run(argv(root, out)) == 0
    fourth = manifest(out)
    assert sorted(fourth["names"]) == [f"series-{i:05d}" for i in range(6, 11)]  # 5 series, all new
    assert {k: v for k, v in _hashes(out).items() if k in before} == before
