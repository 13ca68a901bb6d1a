"""Job admission denials: each refused before anything runs, with a reason that says why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.worlds import job_body
from tre import registry
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.models import AccessGrant, AuditEntry, Job


def _denied(app_client, world, body, who="alice"):  # type: ignore[no-untyped-def]
    r = app_client.post("/api/v1/jobs", headers=world.headers[who], json=body)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()["detail"]


def test_admitted_job_is_queued_and_audited(app_client, world, engine):
    r = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "queued"
    with session_scope(engine) as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.job_id == r.json()["id"]))]
    assert actions == ["job.submitted", "job.admitted"]


def test_admission_names_the_exact_policy_text_it_applied(app_client, world, engine, settings):  # type: ignore[no-untyped-def]
    """Policies are files an admin edits outside tre: each admission's entry carries the
    sha256 of every policy it applied, so an edit (loosened, used, reverted) shows up as a
    digest change between admissions in the signed log."""
    import json
    import shutil

    from tre.policy import load_policy

    policies = settings.home / "policies-under-test"
    shutil.copytree(settings.resolved_policies_dir, policies)
    settings.policies_dir = policies  # type: ignore[misc]

    def admitted_digest() -> str:
        r = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
        assert r.status_code == 201, r.text
        with session_scope(engine) as s:
            body = s.scalar(
                select(AuditEntry.body).where(
                    AuditEntry.job_id == r.json()["id"], AuditEntry.action == "job.admitted"
                )
            )
        assert body is not None
        return json.loads(body)["details"]["policies"]["default"]

    before = admitted_digest()
    assert before == load_policy("default", policies).digest and before.startswith("sha256:")
    path = policies / "default.yaml"
    path.write_text(path.read_text() + "\n# loosened by an admin\n")
    after = admitted_digest()
    assert after != before and after == load_policy("default", policies).digest


def test_no_grant(app_client, world, engine):
    with session_scope(engine) as s:
        registry.add_member(s, "root", "p2", "alice")
    # The same words as for a dataset that does not exist (no probing of dataset names).
    # And it says the project may use none yet (newcomer round 22), whatever the name.
    assert _denied(app_client, world, job_body(project_id="p2")) == (
        "project 'p2' has no access to dataset 'ct1'; it may use no dataset yet: an admin grants access "
        "with tre grant add"
    )


def test_expired_grant(app_client, world, engine):
    with session_scope(engine) as s:
        grant = s.get(AccessGrant, world.grant_id)
        grant.expires_at = utcnow() - timedelta(minutes=1)
    assert "expired access grant" in _denied(app_client, world, job_body())


def test_revoked_grant(app_client, world):
    r = app_client.post(
        f"/api/v1/grants/{world.grant_id}/revoke",
        headers=world.headers["root"],
        json={"reason": "ethics approval lapsed"},
    )
    assert r.status_code == 200, r.text
    assert "revoked" in _denied(app_client, world, job_body())


def test_unknown_dataset_is_indistinguishable_from_ungranted(app_client, world):
    """A typo ('ct11') names the datasets the project may use, the same words for a name that
    exists without a grant (newcomer round 22: 'has no access' alone sent them to an admin)."""
    assert _denied(app_client, world, job_body(dataset_ids=["ct11"])) == (
        "project 'p1' has no access to dataset 'ct11'; the datasets it may use: ct1"
    )


def test_image_not_allowlisted(app_client, world):
    pinned = "@sha256:" + "0" * 64
    assert _denied(app_client, world, job_body(image="docker.io/evil/miner" + pinned)) == (
        f"image 'docker.io/evil/miner{pinned}' is not on the allowlist of policy 'default'"
    )
    # A tag of a repository the allowlist admits: what it lacks is its digest, and the refusal
    # says so and where to find it (newcomer round 22: 'not on the allowlist' sent them to an
    # admin). A tag of one it never admits is refused as such: pinning it would not help.
    tagged = "registry.tre.local/tre-job-cpu:latest"
    assert _denied(app_client, world, job_body(image=tagged)) == (
        f"image '{tagged}' is not pinned by a digest, which policy 'default' requires: "
        "give NAME@sha256:DIGEST as tre image list --usable -p p1 shows it"
    )
    assert _denied(app_client, world, job_body(image="docker.io/evil/miner:latest")) == (
        "image 'docker.io/evil/miner:latest' is not on the allowlist of policy 'default'"
    )


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("cpu", 8, "cpu 8"),
        ("memory_mb", 4096, "memory 4096 MiB"),
        ("gpu", 1, "gpu 1"),
        ("time_limit_s", 99999, "time limit 99999 s"),
    ],
)
def test_over_quota(app_client, world, field, value, words):
    detail = _denied(app_client, world, job_body(**{field: value}))
    assert words in detail and "quota" in detail


def test_too_many_concurrent_jobs(app_client, world):
    for _ in range(3):
        assert (
            app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).status_code
            == 201
        )
    assert "already has 3 queued or running jobs" in _denied(app_client, world, job_body())


def test_non_member(app_client, world):
    assert "not a member of project 'p1'" in _denied(app_client, world, job_body(), who="bob")


def test_denials_are_audited_and_nothing_is_queued(app_client, world, engine):
    _denied(app_client, world, job_body(image="docker.io/evil/miner:latest"))
    with session_scope(engine) as s:
        assert s.scalars(select(Job)).all() == []
        denied = s.scalars(select(AuditEntry).where(AuditEntry.action == "job.denied")).all()
    assert len(denied) == 1 and denied[0].actor == "alice"


def test_bad_request_body_is_a_problem(app_client, world):
    r = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json={"project_id": "p1", "command": []}
    )
    assert r.status_code == 422
    body = r.json()
    assert body["title"] == "Invalid request" and "image" in body["detail"]


def test_the_stored_job_row_is_the_answer_and_stays_usable(app_client, world, engine):
    """Submission writes the job with one Core INSERT (the model's own defaults) and hands
    back an attached `Job`: the stored row equals the answer, and a later change to that
    object is written like any loaded job's."""
    from tre.jobs.service import _insert_job

    r = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    assert r.status_code == 201, r.text
    answer = r.json()
    with session_scope(engine) as s:
        row = s.get(Job, answer["id"])
        assert row is not None
        for key in (
            "project_id",
            "submitted_by",
            "image",
            "command",
            "dataset_ids",
            "cpu",
            "memory_mb",
            "state",
        ):
            assert getattr(row, key) == answer[key], key
        assert row.max_processes == 256 and row.cancel_requested is False and row.reason == ""
        # researchers see times to the minute (tre.jobs.shown_run): the stored row has the second
        assert row.created_at.isoformat().replace("+00:00", "Z")[:16] == answer["created_at"][:16]
    with session_scope(engine) as s:
        job = _insert_job(s, project_id="p1", submitted_by="alice", image="x", command=["true"])
        assert not s.dirty and not s.new  # attached as if loaded: nothing pending
        job.reason = "changed after insert"
        job_id = job.id
    with session_scope(engine) as s:
        stored = s.get(Job, job_id)
        assert stored is not None and stored.reason == "changed after insert" and stored.memory_mb == 1024
    with pytest.raises(TypeError, match="no column"), session_scope(engine) as s:
        _insert_job(s, project_id="p1", submitted_by="alice", image="x", command=["true"], colour="red")
