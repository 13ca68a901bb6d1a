"""The whole TRE in one story, through the real API: a sandboxed job reads DICOM data, its
output goes through the airlock (checks, two blinded DAC votes), the researcher downloads
it, and an auditor verifies the signed log offline — and finds every step in it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.worlds import IMAGE
from tre import committees, registry
from tre.audit.note import VerifierKey
from tre.audit.verify import verify_bundle
from tre.demo_job import DEMO_JOB_SOURCE
from tre.images import catalog
from tre.jobs.worker import Worker
from tre.store.db import session_scope

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


@pytest.fixture
def e2e(engine_any, settings):  # type: ignore[no-untyped-def]
    """The whole story on the embedded SQLite store and on a real PostgreSQL server."""
    from fastapi.testclient import TestClient

    from tre.api.app import create_app

    with TestClient(create_app(settings, engine_any)) as client:
        yield client, engine_any


def test_job_to_release_to_audit(e2e, settings, token_for, tmp_path):
    app_client, engine = e2e
    data = tmp_path / "ct"
    data.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(get_testdata_file(name), data / name)
    users = {"root": ["admin"], "alice": ["researcher"], "dac1": ["dac"], "dac2": ["dac"], "aud": ["auditor"]}
    with session_scope(engine) as s:
        for u, roles in users.items():
            registry.create_user(s, "test", u, roles)
        registry.create_project(s, "root", "lung", "Lung")
        registry.add_member(s, "root", "lung", "alice")
        registry.register_dataset(s, "root", "ct", "CT", data)
        for reviewer in ("dac1", "dac2"):  # the dataset's DAC committee (tre.committees)
            committees.assign(s, "root", "ct", reviewer, settings.resolved_policies_dir)
        registry.grant_access(s, "root", "lung", "ct", days=1)
        catalog.approve(s, settings, "root", IMAGE, "lung", external=True)
    h = {u: {"Authorization": f"Bearer {token_for(u, *r)}"} for u, r in users.items()}

    job = app_client.post(
        "/api/v1/jobs",
        headers=h["alice"],
        json={
            "project_id": "lung",
            "image": IMAGE,
            "command": ["python3", "-c", DEMO_JOB_SOURCE],
            "dataset_ids": ["ct"],
            "time_limit_s": 120,
        },
    ).json()
    Worker(settings, engine).run_until_idle(timeout_s=120)
    job = app_client.get(f"/api/v1/jobs/{job['id']}", headers=h["alice"]).json()
    assert job["state"] == "succeeded", job["reason"]
    log = app_client.get(f"/api/v1/jobs/{job['id']}/logs", headers=h["alice"]).text
    assert "network: unreachable as expected" in log
    outputs = {
        o["path"]: o for o in app_client.get(f"/api/v1/jobs/{job['id']}/outputs", headers=h["alice"]).json()
    }
    assert set(outputs) == {"summary.csv", "montage.png"}

    req = app_client.post(
        "/api/v1/egress/requests",
        headers=h["alice"],
        json={"job_id": job["id"], "files": ["montage.png"], "justification": "figure for the paper"},
    )
    assert req.status_code == 201, req.text
    req_id = req.json()["id"]
    detail = app_client.get(f"/api/v1/egress/requests/{req_id}", headers=h["dac1"]).json()
    assert detail["state"] == "awaiting_review", json.dumps(detail)[:2000]
    # Nothing leaves before two approvals.
    file_id = detail["files"][0]["id"]
    assert app_client.get(
        f"/api/v1/egress/requests/{req_id}/files/{file_id}", headers=h["alice"]
    ).status_code in (403, 409)
    for reviewer in ("dac1", "dac2"):
        r = app_client.post(
            f"/api/v1/egress/requests/{req_id}/votes",
            headers=h[reviewer],
            json={"vote": "approve", "comment": "aggregate image, no identifiers"},
        )
        assert r.status_code == 201, r.text
    released = app_client.get(f"/api/v1/egress/requests/{req_id}", headers=h["alice"]).json()
    assert released["state"] == "approved"
    # Before release alice saw a keyed handle; now the released file's real hash, the one
    # staff saw all along.
    real = {
        o["path"]: o["sha256"]
        for o in app_client.get(f"/api/v1/jobs/{job['id']}/outputs", headers=h["aud"]).json()
    }
    assert outputs["montage.png"]["sha256_keyed"] and outputs["montage.png"]["sha256"] != real["montage.png"]
    assert released["files"][0]["sha256"] == real["montage.png"]
    dl = app_client.get(f"/api/v1/egress/requests/{req_id}/files/{file_id}", headers=h["alice"])
    assert dl.status_code == 200
    assert hashlib.sha256(dl.content).hexdigest() == real["montage.png"]
    record = app_client.get(f"/api/v1/egress/requests/{req_id}/disclosure", headers=h["alice"]).json()
    assert json.dumps(record).count(real["montage.png"]) >= 1

    bundle = app_client.get("/api/v1/audit/export", headers=h["aud"])
    assert bundle.status_code == 200, bundle.text
    # The auditor verifies against the log key pinned out of band, never the bundle's own.
    pinned = VerifierKey.parse(app_client.get("/api/v1/audit/public-key", headers=h["aud"]).json()["vkey"])
    report = verify_bundle(bundle.content, pinned)
    assert report.ok, report
    actions = app_client.get(
        "/api/v1/audit/entries", headers=h["aud"], params={"job_id": job["id"], "limit": 1000}
    )
    assert actions.status_code == 200, actions.text
    seen = {e["action"] for e in actions.json()["items"]}
    assert {"job.submitted", "job.started", "job.ended", "job.output_recorded"} <= seen
