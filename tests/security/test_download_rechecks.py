"""A release approved before the grant was revoked (or lapsed, or the researcher left the
project) no longer downloads (issue 17, item 9); the disclosure record says what each
download re-checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.egress.test_workflow_support import SAFE_CSV, seed_world
from tre.store.base import utcnow
from tre.store.models import AccessGrant, AuditEntry, ProjectMember

BASE = "/api/v1/egress/requests"


@pytest.fixture
def world(db, esettings):  # type: ignore[no-untyped-def]
    with db.begin() as s:
        return seed_world(s, esettings, {"tables/summary.csv": SAFE_CSV})


@pytest.fixture
def auth(token_for):  # type: ignore[no-untyped-def]
    return lambda user, *roles: {"Authorization": f"Bearer {token_for(user, *roles)}"}


@pytest.fixture
def released(app_client, auth, world) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    req = app_client.post(
        BASE,
        headers=auth(world.researcher, "researcher"),
        json={"job_id": world.job_id, "files": ["tables/summary.csv"], "justification": "counts"},
    )
    assert req.status_code == 201, req.text
    rid = req.json()["id"]
    for reviewer in ("dana", "dave"):
        vote = app_client.post(f"{BASE}/{rid}/votes", headers=auth(reviewer, "dac"), json={"vote": "approve"})
        assert vote.status_code == 201, vote.text
    assert app_client.get(f"{BASE}/{rid}", headers=auth("dana", "dac")).json()["state"] == "approved"
    return rid, f"{BASE}/{rid}/files/{req.json()['files'][0]['id']}"


def _refused(app_client, auth, world, url: str, db, slug: str) -> None:  # type: ignore[no-untyped-def]
    resp = app_client.get(url, headers=auth(world.researcher, "researcher"))
    assert resp.status_code in (403, 404), resp.text
    assert resp.json()["type"].endswith(slug)
    with db() as s:
        # The refusal itself, not the aggregated auth.refused counters the API also records.
        actions = [
            e.action
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.idx))
            if not e.action.startswith("auth.")
        ]
    assert actions[-1] == "egress.download_refused" or slug == "not-found"


@pytest.mark.parametrize("change", ["revoked", "expired"])
def test_no_download_once_the_grant_is_gone(app_client, auth, world, db, released, change) -> None:  # type: ignore[no-untyped-def]
    _rid, url = released
    assert app_client.get(url, headers=auth(world.researcher, "researcher")).content == SAFE_CSV
    with db.begin() as s:
        grant = s.scalars(select(AccessGrant)).one()
        if change == "revoked":
            grant.revoked_at, grant.revoked_by = utcnow(), world.admin
        else:
            grant.expires_at = utcnow() - timedelta(seconds=1)
    _refused(app_client, auth, world, url, db, "grant-not-active")


def test_no_download_after_leaving_the_project(app_client, auth, world, db, released) -> None:  # type: ignore[no-untyped-def]
    _rid, url = released
    with db.begin() as s:
        s.delete(s.get(ProjectMember, (world.project_id, world.researcher)))
    _refused(app_client, auth, world, url, db, "not-found")


def test_disclosure_record_states_the_download_conditions(app_client, auth, world, released) -> None:  # type: ignore[no-untyped-def]
    rid, _url = released
    record = app_client.get(f"{BASE}/{rid}/disclosure", headers=auth("audrey", "auditor")).json()
    conditions = " ".join(record["download_conditions"])
    assert "member of the requesting project" in conditions and "unrevoked access grant" in conditions
