"""A job that reads earlier jobs' outputs (``input_job_ids``): admission, lineage, audit, egress.

Real SQLite, the real API and airlock; finished input jobs are left as the worker leaves them
(`WorldFactory.finished_job`). The sandbox side (read-only /inputs/<id>) is in
tests/sandbox/test_sandbox_inputs.py and tests/core/test_job_inputs_cli.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.egress.test_workflow_support import with_egress_routes
from tests.worlds import WorldFactory, job_body
from tre import registry
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.models import AccessGrant, AuditEntry, Job, JobLineageDataset, JobOutput

REPO = Path(__file__).resolve().parents[2]


def _finished(engine, settings, dataset_ids, outputs, state="succeeded"):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return WorldFactory(s).finished_job(settings, "p1", "alice", dataset_ids, outputs, state=state)


def _submit(client, world, who="alice", **overrides):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/jobs", headers=world.headers[who], json=job_body(**overrides))


def _ran(engine, settings, job_id: str, outputs: dict[str, bytes]) -> None:
    """What the worker leaves when a submitted job succeeded: its files and their records."""
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.state, job.exit_code, job.finished_at = "succeeded", 0, utcnow()
        for rel, data in outputs.items():
            path = settings.jobs_dir / job_id / "output" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            s.add(JobOutput(job_id=job_id, path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest()))


def _problem(resp, status: int, slug: str) -> str:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["type"] == f"urn:tre:problem:{slug}", body
    return str(body["detail"])


def test_a_job_reads_a_succeeded_job_and_carries_its_lineage(app_client, world, engine, settings):
    a = _finished(engine, settings, ["ct1"], {"vol.nii.gz": b"volume"})
    r = _submit(app_client, world, dataset_ids=[], input_job_ids=[a])
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["input_job_ids"] == [a] and job["lineage_dataset_ids"] == ["ct1"] and job["dataset_ids"] == []
    shown = app_client.get(f"/api/v1/jobs/{job['id']}", headers=world.headers["alice"]).json()
    assert shown["input_job_ids"] == [a] and shown["lineage_dataset_ids"] == ["ct1"]
    with session_scope(engine) as s:
        entry = s.scalars(
            select(AuditEntry).where(AuditEntry.job_id == job["id"], AuditEntry.action == "job.submitted")
        ).one()
        details = json.loads(entry.body)["details"]
    assert details["input_jobs"] == [a] and details["lineage_datasets"] == ["ct1"]


def test_lineage_is_transitive_and_fixed_at_admission(app_client, world, engine, settings):
    a = _finished(engine, settings, ["ct1"], {"vol.nii": b"a"})
    b = _submit(app_client, world, dataset_ids=[], input_job_ids=[a]).json()["id"]
    _ran(engine, settings, b, {"model.pt": b"b"})
    c = _submit(app_client, world, dataset_ids=[], input_job_ids=[b])
    assert c.status_code == 201, c.text
    assert c.json()["lineage_dataset_ids"] == ["ct1"]  # through B, from A
    with session_scope(engine) as s:
        rows = s.scalars(
            select(JobLineageDataset.dataset_id).where(JobLineageDataset.job_id == c.json()["id"])
        )
        assert list(rows) == ["ct1"]
    # C reads B reads A: once ct1's grant is revoked, nothing derived from it may be read.
    with session_scope(engine) as s:
        registry.revoke_grant(s, "root", world.grant_id, reason="ethics approval ended")
    for input_id in (a, b):
        refused = _submit(app_client, world, dataset_ids=[], input_job_ids=[input_id])
        detail = _problem(refused, 403, "job-not-admitted")
        assert "revoked" in detail and "'ct1'" in detail and "input jobs' outputs derive from" in detail


def test_an_expired_grant_on_a_lineage_dataset_refuses(app_client, world, engine, settings):
    a = _finished(engine, settings, ["ct1"], {"vol.nii": b"a"})
    with session_scope(engine) as s:
        grant = s.get(AccessGrant, world.grant_id)
        assert grant is not None
        grant.expires_at = utcnow()
    detail = _problem(_submit(app_client, world, dataset_ids=[], input_job_ids=[a]), 403, "job-not-admitted")
    assert "expired" in detail and "'ct1'" in detail


def test_another_projects_job_is_not_found_like_a_missing_one(app_client, world, engine, settings):
    with session_scope(engine) as s:
        theirs = WorldFactory(s).finished_job(settings, "p2", "bob", [], {"x.txt": b"bob's"})
    other = _submit(app_client, world, input_job_ids=[theirs])
    missing = _submit(app_client, world, input_job_ids=["f" * 32])
    detail_other = _problem(other, 404, "input-job-not-found")
    detail_missing = _problem(missing, 404, "input-job-not-found")
    assert detail_other.replace(theirs, "ID") == detail_missing.replace("f" * 32, "ID")
    assert "p2" not in detail_other and "bob" not in detail_other
    with session_scope(engine) as s:
        denied = s.scalars(select(AuditEntry).where(AuditEntry.action == "job.denied")).all()
    assert [json.loads(e.body)["details"]["input_jobs"] for e in denied] == [[theirs], ["f" * 32]]


@pytest.mark.parametrize("state", ["failed", "running", "cancelled"])
def test_only_a_succeeded_job_can_be_read(app_client, world, engine, settings, state):
    a = _finished(engine, settings, ["ct1"], {"vol.nii": b"a"}, state=state)
    detail = _problem(_submit(app_client, world, input_job_ids=[a]), 409, "input-job-not-succeeded")
    assert state in detail


def test_a_cohort_that_ended_early_is_resumed_as_an_input(app_client, world, engine, settings):
    """`tre preprocess --resume`: the ended job is read at /inputs/<id> whatever way it ended
    (a plain input must have succeeded), with its lineage; a job still queued or running, or
    another project's, is not."""
    for state in ("failed", "timed_out", "cancelled", "succeeded"):  # admission alone (the check)
        a = _finished(engine, settings, ["ct1"], {"manifest.json": b"{}"}, state=state)
        body = job_body(dataset_ids=[], resume_job_id=a)
        checked = app_client.post("/api/v1/jobs/check", headers=world.headers["alice"], json=body)
        assert checked.status_code == 204, (state, checked.text)
    r = _submit(app_client, world, dataset_ids=[], input_job_ids=[a], resume_job_id=a)  # once
    assert r.status_code == 201, r.text
    assert r.json()["input_job_ids"] == [a] and r.json()["lineage_dataset_ids"] == ["ct1"]
    running = _finished(engine, settings, ["ct1"], {"manifest.json": b"{}"}, state="running")
    detail = _problem(_submit(app_client, world, resume_job_id=running), 409, "resumed-job-not-ended")
    assert "running" in detail and "tre cancel" in detail
    failed = _finished(engine, settings, ["ct1"], {"manifest.json": b"{}"}, state="failed")
    plain = _problem(_submit(app_client, world, input_job_ids=[failed]), 409, "input-job-not-succeeded")
    assert "tre preprocess --resume" in plain
    with session_scope(engine) as s:
        theirs = WorldFactory(s).finished_job(settings, "p2", "bob", [], {"x.txt": b"b"}, state="failed")
    _problem(_submit(app_client, world, resume_job_id=theirs), 404, "input-job-not-found")


def test_outputs_that_are_gone_or_altered_cannot_be_read(app_client, world, engine, settings):
    a = _finished(engine, settings, ["ct1"], {"vol.nii": b"abc", "b.txt": b"b"})
    (settings.jobs_dir / a / "output" / "vol.nii").write_bytes(b"abcd")
    assert "altered" in _problem(_submit(app_client, world, input_job_ids=[a]), 409, "input-outputs-gone")
    (settings.jobs_dir / a / "output" / "vol.nii").unlink()
    assert "no longer kept" in _problem(
        _submit(app_client, world, input_job_ids=[a]), 409, "input-outputs-gone"
    )
    shutil.rmtree(settings.jobs_dir / a)
    assert "no longer kept" in _problem(
        _submit(app_client, world, input_job_ids=[a]), 409, "input-outputs-gone"
    )
    empty = _finished(engine, settings, ["ct1"], {})
    assert "no output" in _problem(
        _submit(app_client, world, input_job_ids=[empty]), 409, "input-outputs-gone"
    )


def test_input_lists_are_bounded_and_unique(app_client, world, engine, settings):
    a = _finished(engine, settings, ["ct1"], {"vol.nii": b"a"})
    _problem(_submit(app_client, world, input_job_ids=[a, a]), 422, "duplicate-input-job")
    too_many = _submit(app_client, world, input_job_ids=[f"{i:032x}" for i in range(17)])
    assert too_many.status_code == 422
    assert _submit(app_client, world, input_job_ids=["not-an-id"]).status_code == 422


def _nifti_label_map(side: int = 16) -> bytes:
    """A NIfTI-1 label map (uint8, values 0-3) of side**3 voxels: a derived volume."""
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, side, side, side, 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, 2, 8)
    struct.pack_into("<f", hdr, 108, 352.0)
    struct.pack_into("<f", hdr, 112, 1.0)
    hdr[344:348] = b"n+1\x00"
    voxels = bytes((i // (side * side)) % 4 for i in range(side**3))
    return bytes(hdr) + b"\x00" * 4 + voxels


@pytest.fixture
def strict_source(settings, engine, world, dicom_dir, tmp_path):  # type: ignore[no-untyped-def]
    """Dataset ``src`` under policy ``strict-src`` (no derived volume over 1000 voxels may
    leave), granted to p1; ct1 keeps the default policy (4M voxels)."""
    policies = tmp_path / "lineage-policies"
    policies.mkdir()
    default = (REPO / "policies" / "default.yaml").read_text()
    (policies / "default.yaml").write_text(default)
    strict = default.replace("name: default", "name: strict-src").replace(
        "max_voxels: 4000000", "max_voxels: 1000"
    )
    assert strict != default
    (policies / "strict-src.yaml").write_text(strict)
    # closed-src: no image of this world's registry may run next to it (job policy).
    closed = default.replace("name: default", "name: closed-src").replace(
        '"registry.tre.local/*@sha256:*"', '"registry.tre.local/vetted/*@sha256:*"'
    )
    assert closed.count("vetted") == 1
    (policies / "closed-src.yaml").write_text(closed)
    settings.policies_dir = policies
    with session_scope(engine) as s:
        make = WorldFactory(s)
        for dataset_id, policy in (("src", "strict-src"), ("closed", "closed-src")):
            shutil.copytree(dicom_dir, tmp_path / dataset_id)
            make.dataset(dataset_id, tmp_path / dataset_id, policy=policy)
            make.grant("p1", dataset_id, days=1)
    return "src"


def test_the_job_policies_of_lineage_datasets_apply(app_client, world, engine, settings, strict_source):
    a = _finished(engine, settings, ["closed"], {"vol.nii": b"a"})
    detail = _problem(_submit(app_client, world, input_job_ids=[a]), 403, "job-not-admitted")
    assert "allowlist of policy 'closed-src'" in detail


def _volume_outcome(client, world, job_id: str) -> tuple[str, list[dict]]:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/egress/requests",
        headers=world.headers["alice"],
        json={"job_id": job_id, "files": ["vol.nii"], "justification": "segmentation for the paper"},
    )
    assert r.status_code == 201, r.text
    (f,) = r.json()["files"]
    return f["outcome"], [c for c in f["checks"] if c["check"] == "volume:size"]


def test_a_volume_laundered_through_a_second_job_stays_under_its_sources_policy(
    app, app_client, world, engine, settings, strict_source
):
    with_egress_routes(app)
    volume = _nifti_label_map()
    # Control: the same file from a job that read only ct1 (default policy) has no size problem.
    plain = _finished(engine, settings, ["ct1"], {"vol.nii": volume})
    outcome, size_checks = _volume_outcome(app_client, world, plain)
    assert size_checks == [] and outcome != "block"
    # A reads src; B reads ct1 and A's outputs and writes the volume again: src's policy holds.
    a = _finished(engine, settings, [strict_source], {"vol.nii": volume})
    b = _submit(app_client, world, dataset_ids=["ct1"], input_job_ids=[a])
    assert b.status_code == 201, b.text
    assert b.json()["lineage_dataset_ids"] == ["src"]
    _ran(engine, settings, b.json()["id"], {"vol.nii": volume})
    outcome, size_checks = _volume_outcome(app_client, world, b.json()["id"])
    assert outcome == "block"
    assert [c["outcome"] for c in size_checks] == ["block"]
    assert "strict-src" in json.dumps(size_checks)


def test_the_worker_checks_the_inputs_again_when_the_job_starts(app_client, world, engine, settings):
    from tre.jobs.worker import Worker

    a = _finished(engine, settings, ["ct1"], {"vol.nii": b"a"})
    b = _submit(app_client, world, dataset_ids=[], input_job_ids=[a]).json()["id"]
    (settings.jobs_dir / a / "output" / "vol.nii").unlink()  # cleaned up while B waited
    Worker(settings, engine).run_until_idle(timeout_s=30)
    with session_scope(engine) as s:
        job = s.get(Job, b)
        assert job is not None and job.state == "failed"
        assert f"the outputs of input job {a} are no longer kept" in job.reason
        reads = s.scalars(
            select(AuditEntry).where(AuditEntry.job_id == b, AuditEntry.action == "dataset.read")
        ).all()
        assert [(e.dataset_id, json.loads(e.body)["details"]) for e in reads] == [("ct1", {"via": "input"})]


def test_lineage_on_sqlite_and_postgresql(engine_any, settings, dicom_dir):
    """The service and the 0009 tables on both stores: lineage written, read back, enforced."""
    from tests.worlds import IMAGE
    from tre import audit
    from tre.auth.principal import Principal
    from tre.errors import AdmissionDenied
    from tre.jobs import service
    from tre.jobs.admission import JobRequest

    audit.configure(engine_any, settings.keys_dir)
    with session_scope(engine_any) as s:
        make = WorldFactory(s)
        make.users({"root": ["admin"], "alice": ["researcher"]})
        make.project("p1", "Project one", ["alice"])
        make.dataset("ct1", dicom_dir)
        grant = make.grant("p1", "ct1")
        make.approve_image("p1")
        a = make.finished_job(settings, "p1", "alice", ["ct1"], {"vol.nii": b"a"})
    alice = Principal("alice", frozenset({"researcher"}))
    request = JobRequest(project_id="p1", image=IMAGE, command=["python3", "train.py"], input_job_ids=[a])
    with session_scope(engine_any) as s:
        b = service.submit(s, settings, alice, request).id
    with session_scope(engine_any) as s:
        job = s.get(Job, b)
        assert job is not None
        assert (job.input_job_ids, job.lineage_dataset_ids, job.governing_dataset_ids) == (
            [a],
            ["ct1"],
            ["ct1"],
        )
        registry.revoke_grant(s, "root", grant)
    with session_scope(engine_any) as s, pytest.raises(AdmissionDenied, match="revoked"):
        service.submit(s, settings, alice, request)
