"""`tre preprocess` as it really runs: the platform's kernels inside the network-less
sandbox, on a registered DICOM dataset, writing NIfTI + JSON sidecars as job outputs.

The dataset's policy records 5 output files (`job.max_output_files`; the default is 200):
the cohort of 3 series writes 7, and the 5 recorded are the manifest and the files nearest
it, so a researcher's listing keeps the manifest and reads like the cohort it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.kernels.synth import chest_phantom, write_series
from tests.worlds import IMAGE, WorldFactory
from tre.cli.preprocess import job_command
from tre.jobs.worker import Worker
from tre.store.db import session_scope

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


REPO = Path(__file__).resolve().parents[2]
SMALL_LIMIT = 5


@pytest.fixture
def small_limit_settings(settings, tmp_path):  # type: ignore[no-untyped-def]
    """The repository's policies plus ``five-outputs``: the default policy recording 5 files."""
    folder = tmp_path / "policies"
    folder.mkdir()
    for source in (REPO / "policies").glob("*.yaml"):
        (folder / source.name).write_text(source.read_text())
    text = (REPO / "policies" / "default.yaml").read_text()
    text = text.replace("name: default", "name: five-outputs", 1)
    text = text.replace("max_output_files: 200", f"max_output_files: {SMALL_LIMIT}", 1)
    assert f"max_output_files: {SMALL_LIMIT}" in text
    (folder / "five-outputs.yaml").write_text(text)
    settings.policies_dir = folder
    return settings


@pytest.fixture
def cohort3(small_limit_settings, world, engine, tmp_path):  # type: ignore[no-untyped-def]
    """Dataset ``cohort3`` under ``five-outputs``, granted to p1: pydicom's CT_small and
    MR_small and a synthetic 4-slice CT, three series."""
    folder = tmp_path / "cohort3"
    folder.mkdir()
    for source in world.data_dir.iterdir():
        (folder / source.name).write_bytes(source.read_bytes())
    write_series(folder / "synth", chest_phantom((4, 24, 20)), spacing_zyx=(2.0, 0.9, 0.9))
    with session_scope(engine) as s:
        make = WorldFactory(s)
        make.dataset("cohort3", folder, "three series", policy="five-outputs")
        make.grant("p1", "cohort3", days=1)
    return "cohort3"


def test_preprocess_job_writes_nifti_and_sidecars(small_limit_settings, cohort3, app_client, world, engine):  # type: ignore[no-untyped-def]
    settings = small_limit_settings
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
            "dataset_ids": [cohort3],
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
    assert "done 3 series: ok 3" in log
    # 7 files, 5 recorded (the policy): the top of the tree first, so the manifest is kept.
    # In fixed words (the count is a number the job chose), which the CLI explains.
    assert "some output files were not recorded" in job["reason"], job["reason"]
    from tre.cli.preprocess import unrecorded_hint

    assert unrecorded_hint(job["reason"]) is not None
    # Named by pseudonym, the outputs' names are the researcher's to read (a UID name was
    # withheld: shown by index, size and hash only).
    mine = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=world.headers["alice"]).json()
    assert sorted(o["path"] for o in mine) == [
        "manifest.json",
        "series/series-00001.json",
        "series/series-00001.nii.gz",
        "series/series-00002.json",
        "series/series-00002.nii.gz",
    ]
    # Every output is on disk for a later --input-job job, found through the manifest.
    out_dir = settings.jobs_dir / job_id / "output"
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["counts"] == {"ok": 3} and len(manifest["names"]) == 3
    for uid, entry in manifest["series"].items():
        assert manifest["names"][entry["name"]] == uid
        (volume,) = (o["path"] for o in entry["outputs"] if o["path"].endswith(".nii.gz"))
        img = nib.load(out_dir / volume)
        sidecar_text = (out_dir / volume.replace(".nii.gz", ".json")).read_text()
        sidecar = json.loads(sidecar_text)
        data = np.asarray(img.dataobj)
        assert data.dtype == np.float32 and data.size > 0 and np.isfinite(data).all()
        assert np.allclose(img.header.get_zooms()[:3], (1.0, 1.0, 1.0))
        assert list(data.shape[:3]) == list(sidecar["shape_xyz"])
        assert sidecar["series"] == entry["name"] and uid not in sidecar_text
        assert sidecar["window"] == [-1000.0, 400.0]
