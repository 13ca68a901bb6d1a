"""The airlock's rules at the service level: freezing, checks, blind votes, conflicts, release."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from egress_review import checking, workflow
from egress_review.disclosure import record_digest
from egress_review.staging import StagingError, freeze, output_file, staged_path
from tests.egress.test_workflow_support import LEAKY_CSV, SAFE_CSV, seed_world
from tests.worlds import WorldFactory
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import TreError
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.models import AccessGrant, AuditEntry, Dataset, EgressRequest, Job, ProjectMember, UserRole


def who(user_id: str, *roles: str) -> Principal:
    return Principal(user_id=user_id, roles=frozenset(roles))


POLICIES: list[Path] = []  # the test's policies folder, for the `vote` helper


@pytest.fixture(autouse=True)
def _policies_folder(esettings: Settings):  # type: ignore[no-untyped-def]
    POLICIES[:] = [esettings.resolved_policies_dir]
    yield
    POLICIES.clear()


@pytest.fixture
def world(db: sessionmaker[Session], esettings: Settings):  # type: ignore[no-untyped-def]
    with db.begin() as s:
        return seed_world(s, esettings)


def audit_actions(s: Session) -> list[tuple[str, str, dict]]:
    rows = s.scalars(select(AuditEntry).order_by(AuditEntry.idx)).all()
    return [(r.actor, r.action, json.loads(r.body).get("details") or {}) for r in rows]


def make_request(db: sessionmaker[Session], settings: Settings, world, files=None) -> str:  # type: ignore[no-untyped-def]
    with db.begin() as s:
        req = workflow.create_request(
            s,
            settings,
            who(world.researcher, "researcher"),
            job_id=world.job_id,
            paths=files or list(world.outputs),
            justification="figures for the paper",
        )
        return req.id


def test_request_freezes_outputs_read_only_and_opens_review(db, esettings, world) -> None:
    rid = make_request(db, esettings, world)
    with db() as s:
        req = workflow.load_request(s, rid)
        assert req.state == "awaiting_review"
        assert req.required_reviews == 2
        pols = workflow.request_view(s, req, who("dana", "dac"), keys_dir=esettings.keys_dir)["policies"]
        assert pols[0]["name"] == "egress-test" and pols[0]["version"] == "3"
        assert pols[0]["digest"].startswith("sha256:")
        for f in req.files:
            data = world.outputs[f.path]
            assert f.sha256 == hashlib.sha256(data).hexdigest()
            frozen = staged_path(esettings.staging_dir, f.sha256)
            assert frozen == esettings.staging_dir / f.sha256[:2] / f.sha256
            assert frozen.read_bytes() == data
            assert stat.S_IMODE(frozen.stat().st_mode) == 0o444
            assert f.checks, f"no checks ran on {f.path}"
        by_path = {f.path: f for f in req.files}
        # The test policy turns "identifying attribute present" into a flag: the DICOM slice
        # keeps InstitutionName, so reviewers must see it flagged, not passed.
        assert by_path["dicom/slice.dcm"].outcome == "flag"
        # The world was built through the registry (admin.* and access.* entries come first).
        actions = [a for _, a, _ in audit_actions(s) if a.startswith("egress.")]
    assert actions[0] == "egress.requested"
    assert actions.count("egress.staged") == 3
    assert actions.count("egress.check") == sum(len(f.checks) for f in req.files)
    assert actions[-1] == "egress.checked"


def test_output_modified_after_the_job_is_refused_and_audited(db, engine, esettings, world) -> None:
    target = world.output_path(esettings, "tables/summary.csv")
    target.write_bytes(SAFE_CSV.replace(b"120", b"121"))
    # The refusal's entry is written after the unit of work's rollback (`settle`).
    with pytest.raises(TreError) as err, session_scope(engine) as s:
        workflow.create_request(
            s,
            esettings,
            who(world.researcher, "researcher"),
            job_id=world.job_id,
            paths=["tables/summary.csv"],
            justification="x",
        )
    assert err.value.status == 409 and err.value.slug == "output-modified"
    assert [e.action for e in err.value.refusals] == ["egress.stage_refused"]
    assert "changed after the job recorded it" in err.value.detail
    with db() as s:
        assert s.scalars(select(EgressRequest)).all() == []
        refused = [d for _, a, d in audit_actions(s) if a == "egress.stage_refused"]
    assert refused and refused[0]["reason"] == "output-modified"
    assert refused[0]["path"] == "tables/summary.csv"


def test_symlinked_output_is_refused_even_with_matching_bytes(db, esettings, world) -> None:
    target = world.output_path(esettings, "tables/summary.csv")
    elsewhere = esettings.home / "elsewhere.csv"
    elsewhere.write_bytes(SAFE_CSV)
    target.unlink()
    target.symlink_to(elsewhere)
    with pytest.raises(TreError) as err, db.begin() as s:
        workflow.create_request(
            s,
            esettings,
            who(world.researcher, "researcher"),
            job_id=world.job_id,
            paths=["tables/summary.csv"],
            justification="x",
        )
    assert err.value.slug == "output-unavailable"


def test_path_escape_and_dedup_in_staging(esettings: Settings) -> None:
    with pytest.raises(StagingError):
        output_file(esettings.jobs_dir, "j1", "../../etc/passwd")
    with pytest.raises(StagingError):
        output_file(esettings.jobs_dir, "j1", "/etc/passwd")
    src = esettings.home / "a.bin"
    src.write_bytes(b"same bytes")
    sha = hashlib.sha256(b"same bytes").hexdigest()
    first = freeze(src, esettings.staging_dir, sha, 10)
    second = freeze(src, esettings.staging_dir, sha, 10)
    assert first.path == second.path and first.path.read_bytes() == b"same bytes"
    assert [p.name for p in first.path.parent.iterdir()] == [sha]  # no temp files left behind


def test_who_may_request_what(db, esettings, world) -> None:
    def attempt(principal: Principal, job_id: str, paths: list[str]) -> TreError:
        with pytest.raises(TreError) as err, db.begin() as s:
            workflow.create_request(s, esettings, principal, job_id=job_id, paths=paths, justification="x")
        return err.value

    foreign = attempt(who(world.outsider, "researcher"), world.job_id, ["tables/summary.csv"])
    unknown = attempt(who(world.outsider, "researcher"), "nope", ["tables/summary.csv"])
    assert (foreign.status, foreign.slug) == (unknown.status, unknown.slug) == (404, "not-found")
    one = attempt(who(world.researcher, "researcher"), world.job_id, ["secret.txt"])
    assert one.slug == "not-a-job-output" and "1 of the named files is not a recorded output" in str(one)
    two = attempt(who(world.researcher, "researcher"), world.job_id, ["secret.txt", "other.txt"])
    assert "2 of the named files are not recorded outputs" in str(two)
    assert attempt(who(world.researcher, "researcher"), "nope", ["x"]).status == 404
    with db.begin() as s:
        s.get(Job, world.job_id).state = "failed"  # type: ignore[union-attr]
    err = attempt(who(world.researcher, "researcher"), world.job_id, ["tables/summary.csv"])
    assert err.slug == "job-not-succeeded" and "failed" in err.detail


def test_outputs_of_a_revoked_grant_cannot_be_released(db, esettings, world) -> None:
    with db.begin() as s:
        grant = s.scalars(select(AccessGrant).where(AccessGrant.dataset_id == world.dataset_id)).one()
        grant.revoked_at = utcnow()
    with pytest.raises(TreError) as err:
        make_request(db, esettings, world)
    assert err.value.slug == "grant-not-active" and "revoked" in err.value.detail
    with db() as s:
        assert s.scalars(select(EgressRequest)).all() == []


def test_identifier_from_the_dataset_blocks_and_cannot_be_approved(db, esettings, world) -> None:
    target = world.output_path(esettings, "tables/summary.csv")
    target.write_bytes(LEAKY_CSV)
    with db.begin() as s:
        out = s.scalars(select(Job).where(Job.id == world.job_id)).one().outputs
        row = next(o for o in out if o.path == "tables/summary.csv")
        row.sha256, row.size = hashlib.sha256(LEAKY_CSV).hexdigest(), len(LEAKY_CSV)
    rid = make_request(db, esettings, world, ["tables/summary.csv"])
    with db() as s:
        req = workflow.load_request(s, rid)
        assert req.state == "blocked"
        blocking = [c for c in req.files[0].checks if c["outcome"] == "block"]
        assert blocking and all(c["reason"] for c in blocking)
        assert req.disclosure_record is not None and req.disclosure_record["released"] is False
    with pytest.raises(TreError) as err, db.begin() as s:
        workflow.cast_vote(
            s, who("dana", "dac"), rid, vote="approve", policies_dir=esettings.resolved_policies_dir
        )
    assert err.value.status == 409 and err.value.slug == "request-blocked"


def vote(db, rid: str, user: str, v: str, *roles: str) -> EgressRequest:  # type: ignore[no-untyped-def]
    with db.begin() as s:
        return workflow.cast_vote(
            s,
            who(user, *(roles or ("dac",))),
            rid,
            vote=v,
            comment=f"{user} says {v}",
            policies_dir=POLICIES[0],
        )


def test_two_approvals_release_with_a_disclosure_record(db, esettings, world) -> None:
    rid = make_request(db, esettings, world)
    assert vote(db, rid, "dana", "approve").state == "awaiting_review"
    assert vote(db, rid, "dave", "approve").state == "approved"
    with db() as s:
        req = workflow.load_request(s, rid)
        record = req.disclosure_record
        assert record is not None and record["released"] is True and record["outcome"] == "approved"
        assert {f["path"]: f["sha256"] for f in record["files"]} == {
            p: hashlib.sha256(b).hexdigest() for p, b in world.outputs.items()
        }
        assert all(f["checks"] for f in record["files"])
        assert record["policies"][0]["name"] == "egress-test"
        assert record["policies"][0]["digest"].startswith("sha256:")
        assert record["policies"][0]["version"] == "3"
        assert record["reviewers"] == ["dana", "dave"]
        assert [d["vote"] for d in record["decisions"]] == ["approve", "approve"]
        assert record["decided_at"] and record["request"]["requested_at"]
        released = [d for _, a, d in audit_actions(s) if a == "egress.released"]
        assert released and released[0]["disclosure_sha256"] == record_digest(record)

    with db.begin() as s:
        f_id = workflow.load_request(s, rid).files[0].id
        f, fh = workflow.open_release_file(s, esettings, who(world.researcher, "researcher"), rid, f_id)
        with fh:
            assert fh.read() == world.outputs[f.path]
    with db() as s:
        assert any(a == "egress.downloaded" for _, a, _ in audit_actions(s))


def test_one_approval_is_not_a_release(db, esettings, world) -> None:
    rid = make_request(db, esettings, world)
    vote(db, rid, "dana", "approve")
    with pytest.raises(TreError) as err, db.begin() as s:
        fid = workflow.load_request(s, rid).files[0].id
        workflow.open_release_file(s, esettings, who(world.researcher, "researcher"), rid, fid)
    assert err.value.status == 409 and err.value.slug == "not-approved"
    # Voting twice does not count twice.
    with pytest.raises(TreError) as again:
        vote(db, rid, "dana", "approve")
    assert again.value.slug == "already-voted"


def test_requester_cannot_review_own_request(db, esettings, world) -> None:
    with db.begin() as s:
        s.add(UserRole(user_id=world.researcher, role="dac"))
    rid = make_request(db, esettings, world)
    with pytest.raises(TreError) as err:
        vote(db, rid, world.researcher, "approve", "dac", "researcher")
    assert err.value.status == 403 and err.value.slug == "self-review"
    assert [e.action for e in err.value.refusals] == ["egress.vote_refused"]
    with pytest.raises(TreError) as err2:
        vote(db, rid, "bob", "approve", "researcher")
    assert err2.value.status == 403 and err2.value.slug == "missing-role"


def test_dac_members_of_the_requesting_project_cannot_review(db, esettings, world) -> None:
    rid = make_request(db, esettings, world)
    with db.begin() as s:
        s.add(ProjectMember(project_id=world.project_id, user_id="dana"))
    with pytest.raises(TreError) as err:
        vote(db, rid, "dana", "approve")
    assert err.value.status == 403 and err.value.slug == "self-review"
    assert "member of project" in err.value.detail
    assert vote(db, rid, "dave", "approve").state == "awaiting_review"


def test_votes_stay_blind_until_all_are_in(db, esettings, world) -> None:
    rid = make_request(db, esettings, world)
    vote(db, rid, "dana", "reject")
    with db() as s:
        req = workflow.load_request(s, rid)
        other = workflow.request_view(s, req, who("dave", "dac"), keys_dir=esettings.keys_dir)
        mine = workflow.request_view(s, req, who("dana", "dac"), keys_dir=esettings.keys_dir)
        owner = workflow.request_view(
            s, req, who(world.researcher, "researcher"), keys_dir=esettings.keys_dir
        )
    for view in (other, owner):
        assert view["votes"] == [] and view["my_vote"] is None and view["votes_revealed"] is False
        assert view["votes_in"] == 1
        assert "reject" not in json.dumps(view)
    assert mine["my_vote"]["vote"] == "reject" and mine["votes"] == []
    assert other["can_vote"] is True and mine["can_vote"] is False
    vote(db, rid, "dave", "reject")
    with db() as s:
        view = workflow.request_view(
            s, workflow.load_request(s, rid), who("dora", "dac"), keys_dir=esettings.keys_dir
        )
    assert view["state"] == "rejected" and view["votes_revealed"]
    assert sorted(v["reviewer"] for v in view["votes"]) == ["dana", "dave"]


def test_disagreement_needs_a_resolution_by_someone_who_did_not_vote(db, esettings, world) -> None:
    rid = make_request(db, esettings, world)
    vote(db, rid, "dana", "approve")
    assert vote(db, rid, "dave", "reject").state == "conflicted"
    with pytest.raises(TreError) as more:
        vote(db, rid, "dora", "approve")
    assert more.value.slug == "needs-resolution"
    assert "tre egress resolve" in str(more.value)  # what to do, not only what is wrong

    def resolve(user: str, *roles: str, comment: str = "settled") -> EgressRequest:
        with db.begin() as s:
            return workflow.resolve(
                s, who(user, *roles), rid, decision="approve", comment=comment, policies_dir=POLICIES[0]
            )

    with pytest.raises(TreError) as voted:
        resolve("dana", "dac")
    assert voted.value.slug == "resolver-voted"
    with pytest.raises(TreError) as own:
        resolve(world.researcher, "researcher", "admin")
    assert own.value.slug == "self-review"
    with pytest.raises(TreError) as nocomment:
        resolve("dora", "dac", comment=" ")
    assert nocomment.value.status == 422
    assert resolve("dora", "dac").state == "approved"
    with db() as s:
        record = workflow.load_request(s, rid).disclosure_record
    assert record is not None and record["decided_by"] == "resolution"
    assert [d["stage"] for d in record["decisions"]] == ["review", "review", "resolution"]


def test_admin_may_resolve_but_not_vote(db, esettings, world) -> None:
    rid = make_request(db, esettings, world)
    with pytest.raises(TreError) as err:
        vote(db, rid, world.admin, "approve", "admin")
    assert err.value.slug == "missing-role"
    vote(db, rid, "dana", "approve")
    vote(db, rid, "dave", "reject")
    with db.begin() as s:
        req = workflow.resolve(
            s,
            who(world.admin, "admin"),
            rid,
            decision="reject",
            comment="not needed",
            policies_dir=POLICIES[0],
        )
        assert req.state == "rejected"


def test_staged_copy_altered_after_approval_is_refused_at_download(db, esettings, world) -> None:
    rid = make_request(db, esettings, world)
    vote(db, rid, "dana", "approve")
    vote(db, rid, "dave", "approve")
    with db() as s:
        f = next(x for x in workflow.load_request(s, rid).files if x.path == "tables/summary.csv")
        fid, sha = f.id, f.sha256
    frozen = staged_path(esettings.staging_dir, sha)
    os.chmod(frozen, 0o644)
    frozen.write_bytes(b"group,count\nnodule,3\n")
    with pytest.raises(TreError) as err, db.begin() as s:
        workflow.open_release_file(s, esettings, who(world.researcher, "researcher"), rid, fid)
    assert err.value.status == 409 and err.value.slug == "staged-file-altered"
    assert [e.action for e in err.value.refusals] == ["egress.download_refused"]
    assert sha in err.value.detail


def test_strictest_policy_of_all_datasets_applies(db, esettings, world) -> None:
    source = esettings.home.parent / "datasets" / world.dataset_id / "0001.dcm"
    with db.begin() as s:
        for ds, policy in (("second", "strict3"), ("third", "lenient1")):
            # Registered as an admin does (the airlock reads a dataset only as its signed
            # registration names it); each committee must reach the quorum: the same three.
            folder = esettings.home.parent / "datasets" / ds
            folder.mkdir(parents=True)
            shutil.copy(source, folder / "0001.dcm")
            WorldFactory(s, actor=world.admin).dataset(
                ds, folder, policy=policy, protected=esettings.protected_paths, committee=world.reviewers
            )
            s.add(
                AccessGrant(
                    project_id=world.project_id,
                    dataset_id=ds,
                    granted_by=world.admin,
                    expires_at=utcnow() + timedelta(days=1),
                )
            )
        job = s.get(Job, world.job_id)
        assert job is not None
        job.dataset_ids = [world.dataset_id, "second", "third"]
    rid = make_request(db, esettings, world, ["tables/summary.csv"])
    vote(db, rid, "dana", "approve")
    assert vote(db, rid, "dave", "approve").state == "awaiting_review"
    with db() as s:
        req = workflow.load_request(s, rid)
        assert req.required_reviews == 3
        assert [p["name"] for p in checking.policies_of(req.files)] == ["egress-test", "lenient1", "strict3"]
        assert {c["policy"] for c in req.files[0].checks} == {"egress-test", "lenient1", "strict3"}
    assert vote(db, rid, "dora", "approve").state == "approved"


def test_a_policy_asking_for_one_review_still_gets_two(db, esettings, world) -> None:
    with db.begin() as s:
        ds = s.get(Dataset, world.dataset_id)
        assert ds is not None
        ds.policy = "lenient1"
    rid = make_request(db, esettings, world, ["tables/summary.csv"])
    assert vote(db, rid, "dana", "approve").state == "awaiting_review"


def test_unknown_policy_refuses_the_request(db, esettings, world) -> None:
    with db.begin() as s:
        ds = s.get(Dataset, world.dataset_id)
        assert ds is not None
        ds.policy = "no-such-policy"
    with pytest.raises(TreError) as err:
        make_request(db, esettings, world)
    assert err.value.slug == "policy-unavailable"


def test_concurrent_final_votes_decide_once_on_both_backends(engine_any, esettings) -> None:
    """Two last votes racing: the row lock (PostgreSQL) / write lock (SQLite) lets one decide."""
    import threading

    from tre.store.db import session_factory

    factory = session_factory(engine_any)
    with factory.begin() as s:
        world = seed_world(s, esettings)
    rid = make_request(factory, esettings, world)
    vote(factory, rid, "dana", "approve")
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def cast(user: str) -> None:
        barrier.wait()
        try:
            vote(factory, rid, user, "approve")
        except TreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=cast, args=(u,)) for u in ("dave", "dora")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    with factory() as s:
        req = workflow.load_request(s, rid)
        assert req.state == "approved"
        # Exactly one of the racing votes counted; the other found voting closed.
        assert len(workflow.review_votes(req)) == 2
        assert [e.slug for e in errors] == ["voting-closed"]  # type: ignore[attr-defined]
        assert sum(1 for _, a, _ in audit_actions(s) if a == "egress.released") == 1
