"""Differencing against the project's earlier releases (leaks13), on SQLite and PostgreSQL.

A total released last week and the same total minus one patient today, or a table by site
released twice with one row changed, give an individual back by subtraction. The checks of a
new request compare its counts with those its project released (never another project's),
and an approval is refused while a release made after the request was checked is a few off it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from egress_review import workflow
from egress_review.checks.released import extract_aggregates
from tests.egress.test_workflow_support import seed_world
from tests.worlds import WorldFactory
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import TreError
from tre.policy import Policy
from tre.store.db import session_factory, settle
from tre.store.models import AuditEntry, EgressAggregate

OUTPUTS = {
    "v1/total.csv": b"cohort,patients\nall,100\n",
    "v2/total_today.csv": b"cohort,patients\nall,99\n",
    "v1/by_site.csv": b"site,n\nA,45\nB,52\nC,30\n",
    "v2/sites.tsv": b"site\tn\nA\t45\nB\t54\nC\t30\n",
    "v1/summary.json": json.dumps({"patients": 100, "by_site": {"A": 45, "B": 52}}).encode(),
    "v2/summary.json": json.dumps({"patients": 99, "by_site": {"A": 45, "B": 52}}).encode(),
    "again/total.csv": b"cohort,patients\nall,100\n",
    "later/total.csv": b"cohort,patients\nall,140\n",
}


def who(user_id: str, *roles: str) -> Principal:
    return Principal(user_id=user_id, roles=frozenset(roles))


@pytest.fixture
def dbany(engine_any: Engine) -> sessionmaker[Session]:
    return session_factory(engine_any)


@pytest.fixture
def world(dbany: sessionmaker[Session], esettings: Settings):  # type: ignore[no-untyped-def]
    with dbany.begin() as s:
        return seed_world(s, esettings, dict(OUTPUTS))


def request(db: sessionmaker[Session], settings: Settings, world, files: list[str], job_id: str = "") -> str:  # type: ignore[no-untyped-def]
    with db.begin() as s:
        return workflow.create_request(
            s,
            settings,
            who(world.researcher, "researcher"),
            job_id=job_id or world.job_id,
            paths=files,
            justification="tables for the paper",
        ).id


def vote(db: sessionmaker[Session], settings: Settings, rid: str, user: str, v: str = "approve") -> str:
    with db.begin() as s:
        return str(
            workflow.cast_vote(
                s, who(user, "dac"), rid, vote=v, comment="ok", policies_dir=settings.resolved_policies_dir
            ).state
        )


def release(db: sessionmaker[Session], settings: Settings, rid: str) -> None:
    assert vote(db, settings, rid, "dana") == "awaiting_review"
    assert vote(db, settings, rid, "dave") == "approved"


def findings(db: sessionmaker[Session], rid: str) -> dict[str, list[dict]]:
    with db() as s:
        req = workflow.load_request(s, rid)
        return {f.path: [c for c in f.checks if c["check"] == "sdc:differencing_releases"] for f in req.files}


def test_counts_a_few_off_a_release_are_flagged_naming_the_release(dbany, esettings, world) -> None:
    first = request(dbany, esettings, world, ["v1/total.csv", "v1/by_site.csv", "v1/summary.json"])
    assert all(not v for v in findings(dbany, first).values())
    release(dbany, esettings, first)
    second = request(dbany, esettings, world, ["v2/total_today.csv", "v2/sites.tsv", "v2/summary.json"])
    found = findings(dbany, second)
    assert set(found) == {"v2/total_today.csv", "v2/sites.tsv", "v2/summary.json"}
    for path, results in found.items():
        assert len(results) == 1, path
        result = results[0]
        assert result["outcome"] == "flag"
        assert first in result["reason"] and result["evidence"]["released_requests"] == [first]
        # fixed vocabulary: no column name or row label of the job's file
        for word in ("patients", "site", "cohort", "all"):
            assert f" {word}" not in result["reason"].replace("differ by", ""), (path, word)
    with dbany() as s:
        assert workflow.load_request(s, second).state == "awaiting_review"


def test_the_same_counts_again_and_far_off_counts_pass(dbany, esettings, world) -> None:
    first = request(dbany, esettings, world, ["v1/total.csv"])
    release(dbany, esettings, first)
    again = request(dbany, esettings, world, ["again/total.csv", "later/total.csv"])
    assert findings(dbany, again) == {"again/total.csv": [], "later/total.csv": []}


def test_a_request_never_released_is_not_compared(dbany, esettings, world) -> None:
    first = request(dbany, esettings, world, ["v1/total.csv"])
    assert vote(dbany, esettings, first, "dana", "reject") == "awaiting_review"
    assert vote(dbany, esettings, first, "dave", "reject") == "rejected"
    second = request(dbany, esettings, world, ["v2/total_today.csv"])
    assert findings(dbany, second) == {"v2/total_today.csv": []}


def test_another_projects_release_is_never_compared(dbany, esettings, world) -> None:
    first = request(dbany, esettings, world, ["v1/total.csv"])
    release(dbany, esettings, first)
    with dbany.begin() as s:
        make = WorldFactory(s, actor=world.admin)
        make.users({"olga": ["researcher"]})
        make.project("p-other", "Other study", ["olga"])
        make.grant("p-other", world.dataset_id)
        other_job = make.finished_job(
            esettings, "p-other", "olga", [world.dataset_id], {"t.csv": OUTPUTS["v2/total_today.csv"]}
        )
    with dbany.begin() as s:
        rid = workflow.create_request(
            s, esettings, who("olga", "researcher"), job_id=other_job, paths=["t.csv"], justification="x"
        ).id
    assert findings(dbany, rid) == {"t.csv": []}


def test_an_approval_after_an_unseen_release_is_refused_and_audited(dbany, esettings, world) -> None:
    """Both requests are checked before either is released: neither saw the other."""
    first = request(dbany, esettings, world, ["v1/total.csv"])
    second = request(dbany, esettings, world, ["v2/total_today.csv"])
    assert findings(dbany, second) == {"v2/total_today.csv": []}
    release(dbany, esettings, first)
    with pytest.raises(TreError) as err:
        with dbany() as s:
            try:
                workflow.cast_vote(
                    s,
                    who("dana", "dac"),
                    second,
                    vote="approve",
                    comment="ok",
                    policies_dir=esettings.resolved_policies_dir,
                )
            except TreError as exc:
                settle(s, exc)  # as the API ends a refused request: rolled back, entry written
                raise
    assert err.value.status == 409 and err.value.slug == "released-since-checked"
    assert first in err.value.detail
    with dbany() as s:
        assert workflow.load_request(s, second).state == "awaiting_review"
        refusals = [
            json.loads(e.body)["details"]
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "egress.vote_refused"))
        ]
    assert refusals and refusals[-1]["reason"] == "released-since-checked"
    # a rejection stays possible, and a fresh request is flagged for the reviewers to judge
    assert vote(dbany, esettings, second, "dana", "reject") == "awaiting_review"
    third = request(dbany, esettings, world, ["v2/total_today.csv"])
    assert findings(dbany, third)["v2/total_today.csv"][0]["evidence"]["released_requests"] == [first]
    # flagged at its checks, so the reviewers saw it: approving is their call
    release(dbany, esettings, third)


def test_released_rows_are_marked_only_on_approval(dbany, esettings, world) -> None:
    first = request(dbany, esettings, world, ["v1/by_site.csv"])
    with dbany() as s:
        rows = s.scalars(select(EgressAggregate).where(EgressAggregate.request_id == first)).all()
        assert {r.key: r.value for r in rows} == {
            "n@a": 45.0,
            "n@b": 52.0,
            "n@c": 30.0,
            "sum:site@total": 127.0,  # the breakdown's sum under its dimension (leaks15)
        }
        assert all(r.released_at is None for r in rows)
    release(dbany, esettings, first)
    with dbany() as s:
        rows = s.scalars(select(EgressAggregate).where(EgressAggregate.request_id == first)).all()
        assert rows and all(r.released_at is not None for r in rows)


def test_aggregate_keys_ignore_file_names_and_total_spellings(tmp_path: Path) -> None:
    policy = Policy(name="t", version="1")
    a = tmp_path / "a.csv"
    a.write_text("group,patients\nGrand total,100\n")
    b = tmp_path / "b.csv"
    b.write_text("Patients\n99\n")
    c = tmp_path / "c.json"
    c.write_text('{"patients": 98, "ok": true}')
    assert extract_aggregates(a, "x/a.csv", policy) == {"patients@total": 100.0}
    assert extract_aggregates(b, "y/b.csv", policy) == {"patients@total": 99.0}
    assert extract_aggregates(c, "c.json", policy) == {"patients@total": 98.0}
    # not a table: nothing
    assert extract_aggregates(a, "a.png", policy) == {}


def _second_job(db: sessionmaker[Session], settings: Settings, world, outputs: dict[str, bytes]) -> str:  # type: ignore[no-untyped-def]
    """Another finished job of the same project (leaks14b: releases are the project's)."""
    with db.begin() as s:
        make = WorldFactory(s, actor=world.admin)
        return make.finished_job(settings, world.project_id, world.researcher, [world.dataset_id], outputs)


def test_a_release_from_another_job_of_the_project_is_compared(dbany, esettings, world) -> None:
    """Released by one job, the total comes back from another in a sentence and as a share."""
    first = request(dbany, esettings, world, ["v1/total.csv"])
    release(dbany, esettings, first)
    job = _second_job(
        dbany,
        esettings,
        world,
        {"report.md": b"A total of 99 patients were analysed.\n", "far.md": b"A total of 140 patients.\n"},
    )
    second = request(dbany, esettings, world, ["report.md", "far.md"], job_id=job)
    found = findings(dbany, second)
    assert found["far.md"] == []
    assert found["report.md"][0]["evidence"]["released_requests"] == [first]


def _approval_refused(db: sessionmaker[Session], settings: Settings, rid: str) -> TreError:
    """A DAC member's approval of ``rid`` (`vote`), which must be refused: the error."""
    with pytest.raises(TreError) as err:
        vote(db, settings, rid, "dana")
    return err.value


def test_an_approval_after_an_unseen_release_under_another_name_is_refused(dbany, esettings, world) -> None:
    """The race check compares as the checks do: a renamed count column (``subjects`` for
    ``patients``) released in between refuses the approval too (before leaks14b only rows of
    the very same key were compared, and it was approved)."""
    job = _second_job(dbany, esettings, world, {"renamed.csv": b"group,subjects\noverall,99\n"})
    first = request(dbany, esettings, world, ["v1/total.csv"])
    second = request(dbany, esettings, world, ["renamed.csv"], job_id=job)
    assert findings(dbany, second) == {"renamed.csv": []}
    release(dbany, esettings, first)
    refused = _approval_refused(dbany, esettings, second)
    assert refused.slug == "released-since-checked" and first in refused.detail


def _released_shares(db: sessionmaker[Session], rid: str) -> dict[str, list[dict]]:
    with db() as s:
        req = workflow.load_request(s, rid)
        return {f.path: [c for c in f.checks if c["check"] == "sdc:released_share"] for f in req.files}


def test_a_share_of_a_released_total_is_flagged_naming_the_release(dbany, esettings, world) -> None:
    """3.0 % withdrawn after a released total of 100 is 3 people (leaks16). The reason names
    the earlier request by its server-made id, which the requester sees as written (the log
    screen would withhold the 32 hex digits as encoded data: the reason is fixed words)."""
    job = _second_job(dbany, esettings, world, {"share.csv": b"cohort,withdrawn_pct\nall,3.0\n"})
    first = request(dbany, esettings, world, ["v1/total.csv"])
    release(dbany, esettings, first)
    second = request(dbany, esettings, world, ["share.csv"], job_id=job)
    [result] = _released_shares(dbany, second)["share.csv"]
    assert result["outcome"] == "flag" and result["evidence"]["released_requests"] == [first]
    assert first in result["reason"] and "withdrawn" not in result["reason"]


def test_an_approval_after_an_unseen_release_of_a_shares_total_is_refused(dbany, esettings, world) -> None:
    """The race check turns shares into counts as the checks do: the total released after the
    share was checked refuses the approval (leaks16)."""
    job = _second_job(dbany, esettings, world, {"share.csv": b"cohort,withdrawn_pct\nall,3.0\n"})
    first = request(dbany, esettings, world, ["v1/total.csv"])
    second = request(dbany, esettings, world, ["share.csv"], job_id=job)
    assert _released_shares(dbany, second) == {"share.csv": []}
    release(dbany, esettings, first)
    refused = _approval_refused(dbany, esettings, second)
    assert refused.slug == "released-since-checked" and first in refused.detail


def test_a_share_of_a_whole_another_file_of_the_request_states_is_flagged(dbany, esettings, world) -> None:
    """6.1 % withdrew, beside the same request's cohort.csv of 33, is 2 people (leaks17): the
    workflow gives each file's checks the request's other files. Which file states the whole
    (a name the job chose) is reviewer-only evidence."""
    from egress_review.checking import for_requester

    outputs = {"share.txt": b"Overall, 6.1 % withdrew consent.\n", "cohort.csv": b"cohort,n\nall,33\n"}
    job = _second_job(dbany, esettings, world, outputs)
    rid = request(dbany, esettings, world, ["share.txt", "cohort.csv"], job_id=job)
    with dbany() as s:
        checks = {f.path: f.checks for f in workflow.load_request(s, rid).files}
    [result] = [c for c in checks["share.txt"] if c["check"] == "sdc:request_share"]
    assert result["outcome"] == "flag" and result["evidence"]["reviewer_only"]["files"] == ["cohort.csv"]
    [shown] = [c for c in for_requester(checks["share.txt"]) if c["check"] == "sdc:request_share"]
    assert "cohort.csv" not in json.dumps(shown)
    assert not [c for c in checks["cohort.csv"] if c["check"] == "sdc:request_share"]


def test_each_file_of_a_request_is_read_for_its_counts_once(dbany, esettings, world, monkeypatch) -> None:
    """Every file with a share is compared with the wholes of all the request's other files,
    and the request keeps every file's counts: each file was read again for each file with a
    share (4 files: 4 reads each, 16 in all). Now once each, and the checks say the same."""
    from collections import Counter

    from egress_review.checks import released

    reads: Counter[str] = Counter()
    real = released.extract_aggregates

    def counted(path: Path, display_name: str, policy: Policy) -> dict[str, float]:
        reads[display_name] += 1
        return real(path, display_name, policy)

    monkeypatch.setattr(released, "extract_aggregates", counted)
    shares = ("3.0", "6.1", "9.1")  # 1, 2 and 3 of 33
    outputs = {f"share{i}.txt": f"Overall, {p} % withdrew consent.\n".encode() for i, p in enumerate(shares)}
    outputs["cohort.csv"] = b"cohort,n\nall,33\n"
    job = _second_job(dbany, esettings, world, outputs)
    rid = request(dbany, esettings, world, sorted(outputs), job_id=job)
    assert reads == Counter({name: 1 for name in outputs}), reads
    with dbany() as s:
        checks = {f.path: f.checks for f in workflow.load_request(s, rid).files}
    flagged = {p for p, cs in checks.items() if any(c["check"] == "sdc:request_share" for c in cs)}
    assert flagged == {"share0.txt", "share1.txt", "share2.txt"}
