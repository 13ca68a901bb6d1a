"""Tamper round 19: the airlock's decisions changed in the database after the fact.

An insider who can write the database (no key) edits the airlock's tables; the log still
verifies, because it was never touched. Before this round the stored rows were obeyed: a
request flipped to approved was downloaded, a released file's hash moved to a file the
committee never released was served (its bytes match the edited hash), a file row added to
a release was served, an edited disclosure record was served as the committee's, a vote
written into (or edited in) ``reviews`` counted towards the quorum and released the files,
and a request set to conflicted was settled by one admin. Each now needs the signed entry
that made the decision (`egress_review.logged_decision`, `tre.audit.attest`).

One world per test (real app, SQLite, the real staging folder); the variants run one after
another on it, each undone before the next. The account test also runs the lookup itself
(`_attest_proves_inclusion`) on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.egress.test_workflow_support import LEAKY_CSV, SAFE_CSV, World, seed_world
from tre.audit import AuditEvent, record_events
from tre.audit.merkle import leaf_hash
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Dataset, EgressFile, EgressRequest, Review

BASE = "/api/v1/egress/requests"
OTHER_CSV = b"group,count\nsmoker,150\nnon_smoker,310\n"
THIRD_CSV = b"group,count\nupper_lobe,210\nlower_lobe,250\n"


@pytest.fixture
def eworld(db: sessionmaker[Session], esettings: Settings) -> World:
    with db.begin() as s:
        return seed_world(
            s,
            esettings,
            {
                "tables/summary.csv": SAFE_CSV,
                "tables/other.csv": OTHER_CSV,
                "tables/third.csv": THIRD_CSV,
                "tables/leaky.csv": LEAKY_CSV,
            },
        )


@pytest.fixture
def auth(token_for: Callable[..., str]) -> Callable[..., dict[str, str]]:
    return lambda user, *roles: {"Authorization": f"Bearer {token_for(user, *roles)}"}


def _request(client: Any, auth: Any, world: World, path: str) -> dict[str, Any]:
    resp = client.post(
        BASE,
        headers=auth(world.researcher, "researcher"),
        json={"job_id": world.job_id, "files": [path], "justification": "counts"},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["state"] == "awaiting_review", resp.json()
    return dict(resp.json())


def _vote(client: Any, auth: Any, rid: str, who: str, vote: str = "approve") -> Any:
    return client.post(f"{BASE}/{rid}/votes", headers=auth(who, "dac"), json={"vote": vote})


def _answer(resp: Any) -> str:
    """The answer's status and problem slug (the variants are compared all at once at the end,
    so a run on the old code shows every one that got through)."""
    kind = resp.json().get("type", "") if resp.headers.get("content-type", "").endswith("json") else ""
    return f"{resp.status_code} {kind.rsplit(':', 1)[-1] if isinstance(kind, str) and kind else ''}".strip()


def test_a_release_is_served_only_as_the_log_recorded_it(
    app_client: Any, auth: Any, eworld: World, db: sessionmaker[Session]
) -> None:
    released = _request(app_client, auth, eworld, "tables/summary.csv")
    withheld = _request(app_client, auth, eworld, "tables/other.csv")
    rid, wid = released["id"], withheld["id"]
    got: dict[str, str] = {}
    for who in ("dana", "dave"):
        assert _vote(app_client, auth, rid, who).status_code == 201
    url = f"{BASE}/{rid}/files/{released['files'][0]['id']}"
    me = auth(eworld.researcher, "researcher")
    assert app_client.get(url, headers=me).content == SAFE_CSV  # the honest release downloads
    record_url = f"{BASE}/{rid}/disclosure"
    assert app_client.get(record_url, headers=me).status_code == 200
    with db() as s:
        other = s.scalars(select(EgressFile).where(EgressFile.request_id == wid)).one()
        other_sha, other_size, other_staged = other.sha256, other.size, other.staged_path
        record = dict(s.get(EgressRequest, rid).disclosure_record or {})
        own_sha = s.scalars(select(EgressFile.sha256).where(EgressFile.request_id == rid)).one()

    # 1. The released file's hash moved to the withheld file's (staged, so its bytes match).
    with db.begin() as s:
        s.execute(update(EgressFile).where(EgressFile.request_id == rid).values(sha256=other_sha))
    got["hash-moved"] = _answer(app_client.get(url, headers=me))
    with db.begin() as s:
        s.execute(update(EgressFile).where(EgressFile.request_id == rid).values(sha256=own_sha))

    # 2. A file row added to the release, naming the withheld file.
    with db.begin() as s:
        s.add(
            EgressFile(
                request_id=rid,
                path="tables/other.csv",
                sha256=other_sha,
                size=other_size,
                staged_path=other_staged,
            )
        )
        s.flush()
        added = s.scalars(
            select(EgressFile.id).where(EgressFile.request_id == rid, EgressFile.sha256 == other_sha)
        ).one()
    got["file-added"] = _answer(app_client.get(f"{BASE}/{rid}/files/{added}", headers=me))
    assert app_client.get(url, headers=me).content == SAFE_CSV  # the logged file still downloads

    # 3. The disclosure record edited after the decision (a vote said otherwise).
    with db.begin() as s:
        req = s.get(EgressRequest, rid)
        edited = {**record, "reviews": [{**r, "vote": "reject"} for r in record.get("reviews", [])]}
        req.disclosure_record = edited
    got["record-edited"] = _answer(app_client.get(record_url, headers=me))
    got["record-edited-download"] = _answer(app_client.get(url, headers=me))
    with db.begin() as s:
        s.get(EgressRequest, rid).disclosure_record = record

    # 4. The request awaiting review flipped to approved, with a record copied in.
    with db.begin() as s:
        req = s.get(EgressRequest, wid)
        req.state, req.disclosure_record = "approved", {**record, "request_id": wid}
    other_url = f"{BASE}/{wid}/files/{withheld['files'][0]['id']}"
    got["flipped-download"] = _answer(app_client.get(other_url, headers=me))
    got["flipped-record"] = _answer(app_client.get(f"{BASE}/{wid}/disclosure", headers=me))
    view = app_client.get(f"{BASE}/{wid}", headers=me).json()
    got["flipped-view"] = "shown" if view["can_download"] or view["votes_revealed"] else "masked"
    got["flipped-view-hash"] = "real" if view["files"][0]["sha256"] == other_sha else "handle"
    release, decision = "409 release-not-in-audit-log", "409 decision-not-in-audit-log"
    assert got == {
        "hash-moved": release,
        "file-added": release,
        "record-edited": decision,
        "record-edited-download": release,
        "flipped-download": release,
        "flipped-record": decision,
        "flipped-view": "masked",
        "flipped-view-hash": "handle",
    }
    with db() as s:
        refusals = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.idx))]
    assert refusals.count("egress.download_refused") == 4
    assert refusals.count("egress.disclosure_refused") == 2


def test_a_vote_counts_only_if_the_log_holds_it(
    app_client: Any, auth: Any, eworld: World, db: sessionmaker[Session], esettings: Settings
) -> None:
    got: dict[str, str] = {}
    planted = _request(app_client, auth, eworld, "tables/summary.csv")["id"]
    edited = _request(app_client, auth, eworld, "tables/other.csv")["id"]
    flipped = _request(app_client, auth, eworld, "tables/third.csv")["id"]
    # 1. A vote written straight into the table: the next real vote would reach the quorum.
    with db.begin() as s:
        s.add(Review(request_id=planted, reviewer_id="dave", stage="review", vote="approve"))
    got["vote-planted"] = _answer(_vote(app_client, auth, planted, "dana"))
    # 2. A real reject vote edited into an approval.
    assert _vote(app_client, auth, edited, "dana", "reject").status_code == 201
    with db.begin() as s:
        s.execute(update(Review).where(Review.request_id == edited).values(vote="approve"))
    got["vote-edited"] = _answer(_vote(app_client, auth, edited, "dave"))
    # 3. A request set to conflicted in the table, then settled by one admin.
    with db.begin() as s:
        s.get(EgressRequest, flipped).state = "conflicted"
    resolve = app_client.post(
        f"{BASE}/{flipped}/resolution",
        headers=auth(eworld.admin, "admin"),
        json={"decision": "approve", "comment": "settled"},
    )
    got["conflict-flipped"] = _answer(resolve)
    # 4. The job's dataset moved (in its row) to an empty folder: the checks would run without
    # its patients' identifiers, and the leaky table would pass them.
    me = auth(eworld.researcher, "researcher")
    leaky = {"job_id": eworld.job_id, "files": ["tables/leaky.csv"], "justification": "volumes"}
    empty = esettings.home.parent / "empty"
    empty.mkdir()
    with db.begin() as s:
        s.execute(update(Dataset).where(Dataset.id == eworld.dataset_id).values(path=str(empty)))
    got["dataset-path"] = _answer(app_client.post(BASE, headers=me, json=leaky))
    assert got == {
        "vote-planted": "409 votes-not-in-audit-log",
        "vote-edited": "409 votes-not-in-audit-log",
        "conflict-flipped": "409 decision-not-in-audit-log",
        "dataset-path": "409 dataset-not-as-registered",
    }
    with db() as s:
        states = {r: s.get(EgressRequest, r).state for r in (planted, edited, flipped)}
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.idx))]
    assert states == {planted: "awaiting_review", edited: "awaiting_review", flipped: "conflicted"}
    assert "egress.released" not in actions
    assert actions.count("egress.vote_refused") == 2 and actions.count("egress.resolution_refused") == 1


def _attest_proves_inclusion(log_engine: Engine) -> None:
    """The lookup finds signed entries; with one row's body and leaf hash rewritten (its
    search columns kept) it proves none (each proof passes through every other leaf's
    subtree), so a caller refuses; on both stores."""
    from tre.audit.attest import signed_entries

    with session_scope(log_engine) as s:
        record_events(
            s,
            [
                AuditEvent("dana", "egress.vote", job_id="j1", details={"request_id": f"r{i}"})
                for i in range(3)
            ],
        )
    wanted: Callable[[dict[str, object]], bool] = lambda body: True  # noqa: E731
    with session_scope(log_engine) as s:
        found = [e.idx for e in signed_entries(s, "egress.vote", "j1", wanted)]
        assert len(found) == 3 and found == list(range(found[0], found[0] + 3))
        row = s.get(AuditEntry, found[1])
        assert row is not None
        body, leaf = row.body, row.leaf_hash
        row.body = body.replace('"r1"', '"r9"')
        row.leaf_hash = leaf_hash(row.body.encode())
    with session_scope(log_engine) as s:
        assert signed_entries(s, "egress.vote", "j1", wanted) == []
        row = s.get(AuditEntry, found[1])
        assert row is not None
        row.body, row.leaf_hash = body, leaf
    with session_scope(log_engine) as s:
        assert len(signed_entries(s, "egress.vote", "j1", wanted)) == 3


def test_doctor_names_accounts_edited_behind_the_log(log_engine: Engine, settings: Settings) -> None:
    """Each account edit straight in the tables (no key) is named by `tre admin doctor`; it
    had no such check (every variant passed unseen), and authentication obeys the rows."""
    from tre import registry
    from tre.doctor import FAIL, OK, check_accounts
    from tre.store.models import User, UserRole

    policies = settings.policies_dir
    with session_scope(log_engine) as s:
        registry.create_user(s, "adam", "adam", ["admin"])
        for user in ("carl", "cleo", "cora", "cyd"):
            registry.create_user(s, "adam", user, ["researcher"])
        registry.set_user_disabled(s, "adam", "carl", True, policies_dir=policies)
        registry.set_user_disabled(s, "adam", "cora", True, policies_dir=policies)
        registry.set_user_disabled(s, "adam", "cora", False, policies_dir=policies)
    assert check_accounts(settings, log_engine).status == OK
    with session_scope(log_engine) as s:
        cora = s.get(User, "cora")
        assert cora is not None and cora.tokens_valid_from is not None
        valid_from = cora.tokens_valid_from

    def enabled(s: Session) -> None:
        s.execute(update(User).where(User.id == "carl").values(disabled=False))

    def role_added(s: Session) -> None:
        s.add(UserRole(user_id="cleo", role="admin"))

    def inserted(s: Session) -> None:
        s.add(User(id="eve", display_name="eve", roles=[UserRole(role="admin")]))

    def epoch_back(s: Session) -> None:
        s.execute(
            update(User).where(User.id == "cora").values(tokens_valid_from=valid_from - timedelta(days=30))
        )

    def epoch_cleared(s: Session) -> None:
        s.execute(
            update(User)
            .where(User.id == "cora")
            .values(tokens_valid_from=None, created_at=valid_from - timedelta(days=30))
        )

    def undo(s: Session) -> None:
        s.execute(update(User).where(User.id == "carl").values(disabled=True))
        s.execute(delete(UserRole).where(UserRole.user_id == "cleo", UserRole.role == "admin"))
        s.execute(delete(UserRole).where(UserRole.user_id == "eve"))
        s.execute(delete(User).where(User.id == "eve"))
        s.execute(update(User).where(User.id == "cora").values(tokens_valid_from=valid_from))

    named = {}
    for edit, who in (
        (enabled, "carl"),
        (role_added, "cleo"),
        (inserted, "eve"),
        (epoch_back, "cora"),
        (epoch_cleared, "cora"),
    ):
        with session_scope(log_engine) as s:
            edit(s)
        check = check_accounts(settings, log_engine)
        named[edit.__name__] = check.status == FAIL and f"user {who}:" in check.detail
        with session_scope(log_engine) as s:
            undo(s)
    assert named == dict.fromkeys(("enabled", "role_added", "inserted", "epoch_back", "epoch_cleared"), True)
    assert check_accounts(settings, log_engine).status == OK
    _attest_proves_inclusion(log_engine)  # on the same store: one database per backend


def test_a_spooled_job_end_counts_only_under_its_jobs_key(  # type: ignore[no-untyped-def]
    app_client, world, engine, settings
) -> None:
    """A file in exactly a worker's form, with the running job's (public) worker id, ended
    the job as it said (round 17's residual). The real worker claims the jobs (each row gets
    its ``end_key``, kept in the worker's memory); only the end it seals is written."""
    import json

    from tests.worlds import job_body
    from tre.executors.base import JobResult
    from tre.jobs import end_spool
    from tre.jobs.worker import DB_AWAY, Worker
    from tre.states import JobState
    from tre.store.models import Job

    worker = Worker(settings, engine, concurrency=1)
    submitted = {
        app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
        for _ in range(3)
    }
    claimed = {worker.claim_next() for _ in range(3)}
    assert claimed == submitted
    plain, wrong_key, real = sorted(claimed)
    folder = end_spool.spool_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    forged = {"worker_id": worker.worker_id, "state": "succeeded", "exit_code": 0, "reason": "forged"}
    (folder / f"{plain}.json").write_text(json.dumps({"job_id": plain, **forged}))
    fake = JobResult(JobState.succeeded, 0, "forged")
    seal = end_spool.seal_of("0" * 64, wrong_key, worker.worker_id, fake)
    (folder / f"{wrong_key}.json").write_text(json.dumps({"job_id": wrong_key, **forged, "seal": seal}))
    key = worker._end_keys[real]
    end_spool.spool_end(settings, real, worker.worker_id, JobResult(JobState.failed, 3, "exit 3"), key)

    assert end_spool.replay(settings, engine, worker._finish, DB_AWAY) == 1
    with session_scope(engine) as s:
        states = {j: s.get(Job, j).state for j in claimed}  # type: ignore[union-attr]
        bodies = " ".join(s.scalars(select(AuditEntry.body)))
    assert states == {plain: "running", wrong_key: "running", real: "failed"}
    assert sorted(p.name for p in end_spool.damaged(settings)) == sorted(
        f"{j}.json{end_spool.DAMAGED}" for j in (plain, wrong_key)
    )
    shown = app_client.get(f"/api/v1/jobs/{plain}", headers=world.headers["alice"]).text
    assert key not in bodies and key not in shown and "end_key" not in shown

    # The job's dataset moved in its row to a folder the project holds no grant for, before
    # the worker starts it: refused before the sandbox starts, nothing mounted.
    other = settings.home.parent / "other-patients"
    other.mkdir()
    with session_scope(engine) as s:
        s.execute(update(Dataset).where(Dataset.id == "ct1").values(path=str(other)))
    worker._run_claimed(plain)
    with session_scope(engine) as s:
        job = s.get(Job, plain)
        assert job is not None and job.state == "failed"
        assert "dataset ct1's path is not the one it was registered with" in job.reason
