"""`tre preprocess` as it really runs: the platform's kernels inside the network-less
sandbox, on a registered DICOM dataset, writing NIfTI + JSON sidecars as job outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.worlds import IMAGE
from tre.cli.preprocess import job_command
from tre.jobs.worker import Worker

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


def test_preprocess_job_writes_nifti_and_sidecars(app_client, world, engine, settings):
    env = {**os.environ, "TRE_HOME": str(settings.home)}
    warm = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "admin", "warm-kernels"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert warm.returncode == 0, warm.stderr
    assert any((settings.home / "numba-cache").rglob("*.nbi"))

    r = app_client.post(
        "/api/v1/jobs",
        headers=world.headers["alice"],
        json={
            "project_id": "p1",
            "image": IMAGE,
            "dataset_ids": ["ct1"],
            "memory_mb": 2048,
            "time_limit_s": 300,
            "command": job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu"),
            "cpu": 2,
        },
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=300)
    job = app_client.get(f"/api/v1/jobs/{job_id}", headers=world.headers["alice"]).json()
    log = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["alice"]).text
    assert job["state"] == "succeeded", log[-2000:]
    # The outputs are named by SeriesInstanceUID, an identifier of the dataset: researchers see
    # those names withheld (egress_review.outputnames), so the names are read as an auditor.
    mine = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=world.headers["alice"]).json()
    assert all(o["path"] is None or not o["path"].endswith(".nii.gz") for o in mine)
    outputs = {
        o["path"]
        for o in app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=world.headers["audrey"]).json()
    }
    niftis = sorted(p for p in outputs if p.endswith(".nii.gz"))
    assert len(niftis) == 2, outputs  # CT_small and MR_small are separate series
    out_dir = settings.jobs_dir / job_id / "output"
    for name in niftis:
        img = nib.load(out_dir / name)
        sidecar = json.loads((out_dir / name.replace(".nii.gz", ".json")).read_text())
        data = np.asarray(img.dataobj)
        assert data.dtype == np.float32 and data.size > 0 and np.isfinite(data).all()
        assert np.allclose(img.header.get_zooms()[:3], (1.0, 1.0, 1.0))
        assert list(data.shape[:3]) == list(sidecar["shape_xyz"])
        assert name.startswith(sidecar["source_series_instance_uid"])
        assert sidecar["window"] == [-1000.0, 400.0]
