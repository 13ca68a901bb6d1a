"""The cohort job inside the real bubblewrap sandbox, on a compressed cohort: its decode
worker processes start there (spawn, /dev/shm semaphores) and the log is progress lines only
(the fixed vocabulary of tre.kernels.progress)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from tests.kernels.synth import chest_phantom, compress_files, write_series
from tre.cli.preprocess import job_command
from tre.executors.base import DatasetMount, JobSpec, RunControl
from tre.executors.local import LocalExecutor

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


def test_compressed_cohort_in_the_sandbox(tmp_path: Path) -> None:
    pytest.importorskip("openjpeg")
    pytest.importorskip("jpeg_ls")
    data = tmp_path / "data"
    raw = chest_phantom((5, 48, 40), seed=5)
    for i, ts in enumerate([None, JPEG2000Lossless, JPEGLSLossless]):
        paths = write_series(data / f"s{i}", raw, spacing_zyx=(2.0, 0.8, 0.8), series_uid=f"1.2.3.{i}")
        if ts:
            compress_files(paths, ts)
    write_series(  # two slices at one position: fails alone
        data / "bad", raw[:3], spacing_zyx=(2.0, 0.8, 0.8), positions_mm=[0, 2, 2], series_uid="1.2.3.9"
    )
    job_id = uuid.uuid4().hex[:12]
    spec = JobSpec(
        job_id=job_id,
        project_id="p1",
        image="host-toolchain",
        command=job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu"),
        datasets=[DatasetMount("ct", host_path=data)],
        output_dir=tmp_path / "out",
        log_path=tmp_path / "log.txt",
        cpu=2,
        memory_mb=4096,
        time_limit_s=600,
    )
    # Developer mode, explicitly: the codecs under test are the virtualenv's, not an image's.
    result = LocalExecutor(images_dir=tmp_path / "images", host_toolchain=True).run(spec, RunControl())
    log = spec.log_path.read_text()
    assert result.state == "succeeded", log[-3000:]
    job_lines = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith("[tre]")]
    assert job_lines[0] == "tre-progress: 0/4 series done, 0 failed"
    assert all(ln.startswith(("tre-progress: ", "tre-series: ")) for ln in job_lines[:-1])
    assert job_lines[-1] == "done 4 series: ok 3 resumed 0 failed 1 (details in manifest.json)", log[-2000:]
    assert "1.2.3." not in log
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == {"ok": 3, "failed": 1}
    volumes = [np.asarray(nib.load(tmp_path / "out" / f"1.2.3.{i}.nii.gz").dataobj) for i in range(3)]
    assert np.array_equal(volumes[0], volumes[1]) and np.array_equal(volumes[0], volumes[2])
