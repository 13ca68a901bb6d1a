"""Airlock governance round 12: per-dataset DAC committees, quorums that cannot be met, expiry
of open requests, and a changed policy said by `tre egress show`. Real stores (SQLite and
PostgreSQL), the real app, the real CLI against uvicorn.

The world: dataset ``lidc-subset`` (the seed world's) reviewed by dana and dave; dataset
``ct2`` reviewed by erin, fay and dora. Project ``lung-nodules`` (alice) may use both.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from egress_review import expiry, workflow
from tests.egress.test_airlock_seams import audited, refused, vote, who
from tests.egress.test_workflow_support import (
    SAFE_CSV,
    LiveServer,
    seed_world,
    with_egress_routes,
    write_policy,
)
from tests.worlds import WorldFactory
from tre import committees, registry
from tre.cli.admin import admin_app
from tre.cli.egress import app as egress_cli
from tre.config import Settings, reset_settings_cache
from tre.errors import TreError
from tre.store.base import utcnow
from tre.store.db import session_factory
from tre.store.models import EgressRequest

BASE = "/api/v1/egress/requests"
OUTPUTS = {"tables/summary.csv": SAFE_CSV}


class Two:
    """Ids of the two-dataset world."""

    def __init__(self, world, job_a: str, job_b: str, job_ab: str) -> None:  # type: ignore[no-untyped-def]
        self.world, self.job_a, self.job_b, self.job_ab = world, job_a, job_b, job_ab


def build_two(s: Session, settings: Settings, ct2_policy: str = "egress-test") -> Two:
    world = seed_world(s, settings, dict(OUTPUTS))
    make = WorldFactory(s, actor=world.admin)
    make.users({"erin": ["dac"], "fay": ["dac"]})
    committees.unassign(s, world.admin, world.dataset_id, "dora", settings.resolved_policies_dir)
    folder = settings.home.parent / "datasets" / "ct2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0001.dcm").write_bytes(
        (settings.home.parent / "datasets" / world.dataset_id / "0001.dcm").read_bytes()
    )
    make.dataset("ct2", folder, "CT two", policy=ct2_policy, committee=["erin", "fay", "dora"])
    make.grant(world.project_id, "ct2")
    job_b = make.finished_job(settings, world.project_id, world.researcher, ["ct2"], OUTPUTS)
    job_ab = make.finished_job(
        settings, world.project_id, world.researcher, [world.dataset_id, "ct2"], OUTPUTS
    )
    return Two(world, world.job_id, job_b, job_ab)


def ask(factory: sessionmaker[Session], settings: Settings, world, job_id: str) -> str:  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        return workflow.create_request(
            s,
            settings,
            who(world.researcher, "researcher"),
            job_id=job_id,
            paths=list(OUTPUTS),
            justification="counts for the paper",
        ).id


@pytest.fixture
def factory(engine_any):  # type: ignore[no-untyped-def]
    return session_factory(engine_any)


@pytest.fixture
def two(factory, esettings) -> Two:  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        return build_two(s, esettings)


# ---------------------------------------------------------------------------- 1. committees


def test_a_dac_member_sees_and_reviews_only_their_committees_requests(factory, esettings, two) -> None:
    rid_a = ask(factory, esettings, two.world, two.job_a)
    rid_b = ask(factory, esettings, two.world, two.job_b)
    with factory() as s:
        mine = {r.id for r in workflow.list_requests(s, who("dana", "dac"))}
        theirs = {r.id for r in workflow.list_requests(s, who("erin", "dac"))}
        everyone = {r.id for r in workflow.list_requests(s, who("audrey", "auditor"))}
        assert mine == {rid_a} and theirs == {rid_b} and everyone == {rid_a, rid_b}
        # Not even that the other committee's request exists: the same 404 as an unknown id.
        for rid in (rid_b, "0" * 32):
            with pytest.raises(TreError) as err:
                workflow.visible_request(s, rid, who("dana", "dac"))
            assert err.value.status == 404 and "does not exist or is not visible" in str(err.value)
    for user, rid in (("dana", rid_b), ("erin", rid_a)):
        with pytest.raises(TreError) as err, factory.begin() as s:
            workflow.cast_vote(
                s, who(user, "dac"), rid, vote="approve", policies_dir=esettings.resolved_policies_dir
            )
        assert err.value.status == 404
    with pytest.raises(TreError) as err, factory() as s:
        workflow.open_for_review(s, esettings, who("dana", "dac"), rid_b, 1)
    assert err.value.status == 404
    # A DAC member on no committee at all sees nothing (deny by default).
    with factory.begin() as s:
        WorldFactory(s, actor=two.world.admin).users({"gil": ["dac"]})
    with factory() as s:
        assert workflow.list_requests(s, who("gil", "dac")) == []
    assert vote(factory, esettings, rid_a, "dana", "approve") == "awaiting_review"
    assert vote(factory, esettings, rid_a, "dave", "approve") == "approved"


def test_a_dac_member_reads_the_code_of_their_committees_jobs_only(factory, esettings, two) -> None:
    from tre.code.service import job_with_code
    from tre.store.models import Job

    with factory.begin() as s:
        for job_id in (two.job_a, two.job_b):
            job = s.get(Job, job_id)
            assert job is not None
            job.code_hash = "ab" * 32
    with factory() as s:
        assert job_with_code(s, who("dana", "dac"), two.job_a).id == two.job_a
        assert job_with_code(s, who("erin", "dac"), two.job_b).id == two.job_b
        assert job_with_code(s, who("audrey", "auditor"), two.job_b).id == two.job_b
        for user, job_id in (("dana", two.job_b), ("erin", two.job_a)):
            with pytest.raises(TreError) as err:
                job_with_code(s, who(user, "dac"), job_id)
            assert err.value.status == 404 and str(err.value) == f"no job {job_id!r}"


def test_a_request_over_two_datasets_needs_each_committees_quorum(factory, esettings, two) -> None:
    rid = ask(factory, esettings, two.world, two.job_ab)
    with factory() as s:
        assert workflow.load_request(s, rid).dataset_ids == sorted([two.world.dataset_id, "ct2"])
        assert rid in {r.id for r in workflow.list_requests(s, who("dana", "dac"))}
        assert rid in {r.id for r in workflow.list_requests(s, who("erin", "dac"))}
    assert vote(factory, esettings, rid, "dana", "approve") == "awaiting_review"
    # lidc-subset's committee has its two votes; ct2's has none: not decided (strictest wins).
    assert vote(factory, esettings, rid, "dave", "approve") == "awaiting_review"
    assert vote(factory, esettings, rid, "erin", "approve") == "awaiting_review"
    assert vote(factory, esettings, rid, "fay", "approve") == "approved"
    with factory() as s:
        record = workflow.load_request(s, rid).disclosure_record
        assert record is not None and record["reviewers"] == ["dana", "dave", "erin", "fay"]


def test_a_conflict_over_two_datasets_is_settled_by_a_member_of_every_committee(
    factory, esettings, two
) -> None:
    rid = ask(factory, esettings, two.world, two.job_ab)
    for user, v in (("dana", "approve"), ("dave", "approve"), ("erin", "reject"), ("fay", "approve")):
        state = vote(factory, esettings, rid, user, v)
    assert state == "conflicted"
    with pytest.raises(TreError) as err, factory() as s:
        workflow.resolve(
            s,
            who("dora", "dac"),
            rid,
            decision="approve",
            comment="ok",
            policies_dir=esettings.resolved_policies_dir,
        )
    assert err.value.slug == "not-on-committee"  # dora reviews ct2 only
    with factory.begin() as s:
        WorldFactory(s, actor=two.world.admin).committee(two.world.dataset_id, ["dora"])
    with factory.begin() as s:
        done = workflow.resolve(
            s,
            who("dora", "dac"),
            rid,
            decision="reject",
            comment="no",
            policies_dir=esettings.resolved_policies_dir,
        )
        assert done.state == "rejected"


def test_the_migration_seats_existing_dac_members_on_existing_datasets(
    engine_any, settings, tmp_path
) -> None:
    """The upgrade path: at 0013 every user then holding dac sits on every dataset then
    registered, and existing requests get their job's datasets."""
    from alembic import command

    from tre.store.db import alembic_config

    cfg = alembic_config(engine_any)
    command.downgrade(cfg, "0012_image_imports")
    with engine_any.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO users (id, display_name, disabled, created_at) VALUES "
            "('olddac', '', false, '2026-01-01 00:00:00'), ('oldres', '', false, '2026-01-01 00:00:00')"
        )
        c.exec_driver_sql(
            "INSERT INTO user_roles (user_id, role) VALUES ('olddac', 'dac'), ('oldres', 'researcher')"
        )
        c.exec_driver_sql(
            "INSERT INTO datasets (id, name, path, description, policy, meta, created_at, conditions, "
            "access_rights) VALUES ('old', 'Old', '/srv/old', '', 'default', '{}', '2026-01-01 00:00:00', "
            "'[]', 'NON_PUBLIC')"
        )
    command.upgrade(cfg, "head")
    with session_factory(engine_any)() as s:
        assert committees.committee(s, "old") == ["olddac"]
        assert committees.reviewer_dataset_ids(s, "oldres") == frozenset()


# ---------------------------------------------------------------------------- 2. quorum


def test_a_quorum_the_committee_cannot_reach_is_said_in_fixed_words(factory, esettings) -> None:
    """strict3 needs three reviews; ct2's committee has three, but dora is also a member of
    the project (a conflict of interest), so only two may vote: the request says so."""
    with factory.begin() as s:
        two = build_two(s, esettings, ct2_policy="strict3")
    rid = ask(factory, esettings, two.world, two.job_b)
    with factory() as s:
        req = workflow.load_request(s, rid)
        assert workflow.quorum_shortfall(s, req) == []
        view = workflow.request_view(s, req, who("erin", "dac"), keys_dir=esettings.keys_dir)
        assert view["quorum_unmeetable"] is False and view["notices"] == []
    # Said at the moment of the change (round 13): refused unless forced.
    with pytest.raises(TreError) as err, factory.begin() as s:
        registry.add_member(s, two.world.admin, two.world.project_id, "dora")
    assert err.value.slug == "quorum-unmeetable" and rid in err.value.detail
    with factory.begin() as s:
        registry.add_member(s, two.world.admin, two.world.project_id, "dora", force=True)
    with factory() as s:
        req = workflow.load_request(s, rid)
        assert workflow.quorum_shortfall(s, req) == ["ct2"]
        for viewer in (who("erin", "dac"), who(two.world.researcher, "researcher")):
            view = workflow.request_view(s, req, viewer, keys_dir=esettings.keys_dir)
            assert view["quorum_unmeetable"] is True
            assert view["notices"] == [workflow.QUORUM_UNMEETABLE]
    # It can still be closed: a rejection by those who may vote.
    assert vote(factory, esettings, rid, "erin", "reject") == "awaiting_review"


def test_removing_a_member_that_breaks_the_quorum_is_refused_unless_forced(factory, esettings, two) -> None:
    policies = esettings.resolved_policies_dir
    with pytest.raises(TreError) as err, factory.begin() as s:
        committees.unassign(s, two.world.admin, two.world.dataset_id, "dana", policies)
    assert err.value.slug == "quorum-unmeetable" and err.value.status == 409
    with factory() as s:
        assert committees.committee(s, two.world.dataset_id) == ["dana", "dave"]  # nothing lost
    with factory.begin() as s:
        state = committees.unassign(s, two.world.admin, two.world.dataset_id, "dana", policies, force=True)
        assert not state.meetable
    with factory() as s:
        report = {c.dataset_id: c.meetable for c in committees.committee_report(s, policies)}
    assert report == {two.world.dataset_id: False, "ct2": True}
    forced = [d for d in audited(factory, "admin.dac_unassigned") if d["user"] == "dana"]
    assert forced == [
        {"dataset": two.world.dataset_id, "user": "dana", "quorum_meetable": False, "forced": True}
    ]
    with pytest.raises(TreError) as err, factory.begin() as s:
        committees.assign(s, two.world.admin, "ct2", two.world.researcher, policies)
    assert err.value.slug == "not-a-dac-member"


# ---------------------------------------------------------------------------- 3. expiry


def age(factory: sessionmaker[Session], rid: str, days: float) -> None:
    with factory.begin() as s:
        s.execute(
            update(EgressRequest)
            .where(EgressRequest.id == rid)
            .values(created_at=utcnow() - timedelta(days=days))
        )


def test_open_requests_expire_once_audited_and_can_be_asked_again(
    factory, esettings, two, engine_any
) -> None:
    old = ask(factory, esettings, two.world, two.job_a)
    fresh = ask(factory, esettings, two.world, two.job_a)
    conflicted = ask(factory, esettings, two.world, two.job_b)
    vote(factory, esettings, old, "dana", "approve")
    vote(factory, esettings, conflicted, "erin", "approve")
    vote(factory, esettings, conflicted, "fay", "reject")
    age(factory, old, 31)
    age(factory, conflicted, 40)
    age(factory, fresh, 29)
    assert sorted(expiry.sweep(engine_any, timedelta(days=30))) == sorted([old, conflicted])
    assert expiry.sweep(engine_any, timedelta(days=30)) == []  # idempotent: a second sweep finds none
    with factory() as s:
        assert workflow.load_request(s, fresh).state == "awaiting_review"
        req = workflow.load_request(s, old)
        assert req.state == "expired" and req.decided_at is not None
        record = req.disclosure_record
        assert record is not None and record["decided_by"] == "expiry" and record["reviewers"] == []
        assert record["votes_in"] == 1 and record["expiry"]["reason"] == "no-decision-in-time"
        view = workflow.request_view(
            s, req, who(two.world.researcher, "researcher"), keys_dir=esettings.keys_dir
        )
        assert view["notices"] == [workflow.EXPIRED_REASON] and view["votes"] == []
    events = audited(factory, "egress.expired")
    assert sorted(e["request_id"] for e in events) == sorted([old, conflicted])
    assert {e["reason"] for e in events} == {"no-decision-in-time"}
    assert refused(factory, esettings, old, "dave", "approve").slug == "voting-closed"
    again = ask(factory, esettings, two.world, two.job_a)  # the same files, a new request
    assert again != old
    with factory() as s:
        assert workflow.load_request(s, again).state == "awaiting_review"


def test_a_host_clock_stepped_forward_expires_nothing_early(factory, esettings, two, engine_any) -> None:
    """Before, the sweep judged age by the sweeping host's wall clock alone: a step of 40 days
    forward (a resumed virtual machine, ``date -s``) expired a two-day-old request. Now the
    database's clock must agree, and the audit entry says which clock decided."""
    young = ask(factory, esettings, two.world, two.job_a)
    old = ask(factory, esettings, two.world, two.job_b)
    age(factory, young, 2)
    age(factory, old, 31)
    jumped = utcnow() + timedelta(days=40)
    assert expiry.sweep(engine_any, timedelta(days=30), now=jumped) == [old]
    with factory() as s:
        assert workflow.load_request(s, young).state == "awaiting_review"
        assert workflow.load_request(s, old).state == "expired"
    (event,) = audited(factory, "egress.expired")
    assert event["clock"]["decided_by"] == "database"  # the later of the two to agree
    assert event["clock"]["host"].startswith(jumped.date().isoformat())
    assert event["clock"]["database"].startswith(utcnow().date().isoformat())
    assert expiry.sweep(engine_any, timedelta(days=30)) == []  # by the right clock: still young


@pytest.mark.parametrize("first", ["vote", "expiry"])
def test_expiry_racing_the_last_vote_decides_once(factory, esettings, two, first) -> None:
    """Two connections: the one that locks the row first wins whole; the other finds the
    request closed (the sweep skips it, the vote is refused)."""
    rid = ask(factory, esettings, two.world, two.job_a)
    vote(factory, esettings, rid, "dana", "approve")
    age(factory, rid, 31)
    holder = factory()
    other: dict[str, object] = {}
    if first == "vote":
        workflow.cast_vote(
            holder, who("dave", "dac"), rid, vote="approve", policies_dir=esettings.resolved_policies_dir
        )

        def second() -> None:
            with factory.begin() as s:
                other["expired"] = expiry.expire_one(s, rid, timedelta(days=30))
    else:
        assert expiry.expire_one(holder, rid, timedelta(days=30))

        def second() -> None:
            try:
                vote(factory, esettings, rid, "dave", "approve")
            except TreError as exc:
                other["refused"] = exc.slug

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=1.5)
    assert thread.is_alive()  # waiting on the row lock the first connection holds
    holder.commit()
    holder.close()
    thread.join(timeout=60)
    with factory() as s:
        req = workflow.load_request(s, rid)
        if first == "vote":
            assert req.state == "approved" and other == {"expired": False}
        else:
            assert req.state == "expired" and other == {"refused": "voting-closed"}
            assert len(workflow.review_votes(req)) == 1
    assert len(audited(factory, "egress.released")) + len(audited(factory, "egress.expired")) == 1


def test_the_worker_runs_the_sweep_and_the_setting_turns_it_off(factory, esettings, two, engine_any) -> None:
    from tre.jobs.worker import Worker

    rid = ask(factory, esettings, two.world, two.job_a)
    age(factory, rid, 2)
    esettings.egress_open_ttl_days = 0  # never expire
    w = Worker(esettings, engine_any, periodic=[expiry.sweeper(engine_any, esettings)])
    w.tick()
    with factory() as s:
        assert workflow.load_request(s, rid).state == "awaiting_review"
    esettings.egress_open_ttl_days = 1
    clock = iter([0.0, 1.0, 100.0])
    w = Worker(esettings, engine_any, periodic=[expiry.sweeper(engine_any, esettings, lambda: next(clock))])
    w.tick()
    with factory() as s:
        assert workflow.load_request(s, rid).state == "expired"
    w._pool.shutdown()


# ---------------------------------------------------------------------------- API, CLI


def test_committees_through_the_api_and_the_cli(app, db, esettings, token_for, monkeypatch) -> None:
    with db.begin() as s:
        two = build_two(s, esettings)
    admin = {"Authorization": f"Bearer {token_for(two.world.admin, 'admin')}"}
    dana = {"Authorization": f"Bearer {token_for('dana', 'dac')}"}
    alice = {"Authorization": f"Bearer {token_for(two.world.researcher, 'researcher')}"}
    with LiveServer(with_egress_routes(app)) as live, TestClient(with_egress_routes(app)) as c:
        body = {"job_id": two.job_b, "files": list(OUTPUTS), "justification": "counts"}
        rid_b = c.post(BASE, headers=alice, json=body).json()["id"]
        unknown = c.get(f"{BASE}/{'0' * 32}", headers=dana)
        for path in (f"{BASE}/{rid_b}", f"{BASE}/{rid_b}/disclosure", f"{BASE}/{rid_b}/files/1"):
            got = c.get(path, headers=dana)
            assert got.status_code in (403, 404), (path, got.text)
            if path != f"{BASE}/{rid_b}/files/1":  # downloads are researchers' (403 missing-role first)
                assert got.status_code == 404 and got.json()["type"] == unknown.json()["type"]
        assert c.post(f"{BASE}/{rid_b}/votes", headers=dana, json={"vote": "approve"}).status_code == 404
        assert rid_b not in {r["id"] for r in c.get(BASE, headers=dana).json()}
        # Committees are the admin's: a DAC member cannot seat themselves.
        assert (
            c.post("/api/v1/admin/committees/ct2/members", headers=dana, json={"user_id": "dana"}).status_code
            == 403
        )
        seated = c.post("/api/v1/admin/committees/ct2/members", headers=admin, json={"user_id": "dana"})
        assert seated.status_code == 201 and "dana" in seated.json()["members"]
        assert c.get(f"{BASE}/{rid_b}", headers=dana).status_code == 200
        cut = c.delete("/api/v1/admin/committees/ct2/members/erin", headers=admin)
        assert cut.status_code == 200 and cut.json()["able_reviewers"] == 3
        refused_cut = c.delete("/api/v1/admin/committees/ct2/members/fay", headers=admin)
        assert refused_cut.status_code == 200
        last = c.delete("/api/v1/admin/committees/ct2/members/dora", headers=admin)
        assert last.status_code == 409 and last.json()["type"].endswith("quorum-unmeetable")
        bad = c.post("/api/v1/admin/committees/nope/members", headers=admin, json={"user_id": "dana"})
        assert bad.status_code == 404 and bad.headers["content-type"].startswith("application/problem+json")

        monkeypatch.setenv("TRE_API_URL", live.url)
        monkeypatch.setenv("TRE_TOKEN", token_for(two.world.admin, "admin"))
        reset_settings_cache()
        runner = CliRunner()
        listed = runner.invoke(admin_app, ["dac", "list"])
        assert listed.exit_code == 0, listed.output
        assert "ct2" in listed.output and "dana" in listed.output
        forced = runner.invoke(admin_app, ["dac", "unassign", "ct2", "dora", "--force"])
        assert forced.exit_code == 0 and "QUORUM CANNOT BE MET" in forced.output, forced.output
        # Round 21: and what to do about it.
        said = " ".join(forced.output.split())
        assert re.search(r"CANNOT BE MET: seat 1 more DAC member with tre admin dac assign ct2 USER", said), (
            said
        )
        short = runner.invoke(admin_app, ["dac", "list"])
        assert short.exit_code == 1 and "quorum of 1 dataset cannot be met: ct2" in str(short.exception)
        again = runner.invoke(admin_app, ["dac", "assign", "ct2", "erin"])
        assert again.exit_code == 0 and "erin now reviews ct2" in again.output, again.output
        # What the DAC member and the researcher are told about an unmeetable request.
        runner.invoke(admin_app, ["dac", "unassign", "ct2", "erin", "--force"])
        for user, roles in (("dana", ("dac",)), (two.world.researcher, ("researcher",))):
            monkeypatch.setenv("TRE_TOKEN", token_for(user, *roles))
            reset_settings_cache()
            shown = runner.invoke(egress_cli, ["show", rid_b])
            assert shown.exit_code == 0, shown.output
            assert "cannot reach its quorum" in " ".join(shown.output.split())


def test_show_says_the_policy_changed_since_the_checks(app, db, esettings, token_for, monkeypatch) -> None:
    with db.begin() as s:
        world = seed_world(s, esettings, dict(OUTPUTS))
    with LiveServer(with_egress_routes(app)) as live, TestClient(with_egress_routes(app)) as c:
        alice = {"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"}
        body = {"job_id": world.job_id, "files": list(OUTPUTS), "justification": "counts"}
        rid = c.post(BASE, headers=alice, json=body).json()["id"]
        assert c.get(f"{BASE}/{rid}", headers=alice).json()["policy_changed"] is False
        write_policy(Path(esettings.resolved_policies_dir), version="4")  # tightened while it waits
        got = c.get(f"{BASE}/{rid}", headers=alice).json()
        assert got["policy_changed"] is True and got["notices"] == [workflow.POLICY_CHANGED]
        monkeypatch.setenv("TRE_API_URL", live.url)
        runner = CliRunner()
        for user, roles in (("dana", ("dac",)), (world.researcher, ("researcher",))):
            monkeypatch.setenv("TRE_TOKEN", token_for(user, *roles))
            reset_settings_cache()
            shown = runner.invoke(egress_cli, ["show", rid])
            words = " ".join(shown.output.split())
            assert shown.exit_code == 0 and "policy changed since this request's checks ran" in words, words
            assert "ask again (tre egress request)" in words


# ---------------------------------------------------------------------------- panel


@pytest.mark.browser
def test_the_panel_shows_a_dac_member_only_their_committees_requests(
    browser, live, db, esettings, token_for
) -> None:
    from tests.egress.test_panel_browser import sign_in

    with db.begin() as s:
        two = build_two(s, esettings)
    factory = session_factory(db.kw["bind"])
    rid_a = ask(factory, esettings, two.world, two.job_a)
    rid_b = ask(factory, esettings, two.world, two.job_b)
    with db.begin() as s:  # lidc-subset's committee down to dana alone: its quorum of two is out of reach
        committees.unassign(
            s, two.world.admin, two.world.dataset_id, "dave", esettings.resolved_policies_dir, force=True
        )
    context, page = sign_in(browser, live, token_for("dana", "dac"))
    try:
        queue = page.content()
        assert rid_a[:8] in queue and rid_b[:8] not in queue
        page.goto(f"{live.url}/panel/?show=all")
        assert rid_b[:8] not in page.content()
        other = page.goto(f"{live.url}/panel/requests/{rid_b}")
        assert other is not None and other.status == 404
        unknown = page.goto(f"{live.url}/panel/requests/{'0' * 32}")
        assert unknown is not None and unknown.status == 404
        mine = page.goto(f"{live.url}/panel/requests/{rid_a}")
        assert mine is not None and mine.status == 200
        note = page.locator("#quorum-unmeetable")
        assert note.is_visible() and "cannot reach its quorum" in note.inner_text()
        # An expired request: the state's own line and the fixed words.
        rid_c = ask(factory, esettings, two.world, two.job_a)
        age(factory, rid_c, 31)
        assert expiry.sweep(db.kw["bind"], timedelta(days=30)) == [rid_c]
        page.goto(f"{live.url}/panel/requests/{rid_c}")
        assert page.locator("#expired").is_visible()
        assert "the request expired" in page.content()
    finally:
        context.close()
