"""Round 16: the airlock's refusal entries survive a store that cannot take them.

The airlock's refusals that matter for security (a self-review vote, the download of a staged
file altered since it was frozen, an output changed before it was frozen...) were written in
the refused request's own transaction, and that transaction committed although the action
failed. When the commit failed (the store busy, full or away) the researcher or reviewer got
a 503 instead of the refusal and the entry was gone; when it worked, whatever the unit of work
had written before the refusal was committed with it. Now each entry rides on the error
(`TreError.refusals`), the unit of work is rolled back whole, and the entry is written after
it, in a unit of work of its own, kept on disk when the store cannot take it then. Places
that catch a refusal and answer normally (the panel's vote form, a file card, the federation
node's release step) hand the entry on (`tre.store.db.note_refusals`).

The store's failure is a real exception raised where an append signs its checkpoint, as a
busy store raises there (`store_refuses_appends`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from egress_review import workflow
from egress_review.staging import staged_path
from tests.audit.test_refusals_durable_round15 import store_refuses_appends
from tests.egress.test_api_panel import csrf_of, login
from tests.egress.test_workflow_support import seed_world, with_egress_routes
from tests.worlds import WorldFactory
from tre import registry
from tre.auth.principal import Principal
from tre.errors import TreError
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Review, UserRole

BASE = "/api/v1/egress/requests"


def _entries(engine: Engine, action: str) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        bodies = s.scalars(select(AuditEntry.body).order_by(AuditEntry.idx)).all()
    return [e for e in map(json.loads, bodies) if e["action"] == action]


@pytest.fixture
def world(db, esettings):  # type: ignore[no-untyped-def]
    with db.begin() as s:
        w = seed_world(s, esettings)
        s.add(UserRole(user_id=w.researcher, role="dac"))  # a requester who also reviews
        make = WorldFactory(s, actor=w.admin)
        make.users({"carol": ["researcher"]})  # a colleague in the requester's project
        registry.add_member(s, w.admin, w.project_id, "carol")
    return w


@pytest.fixture
def client(app, app_client, esettings):  # type: ignore[no-untyped-def]
    with_egress_routes(app)
    return app_client


@pytest.fixture
def auth(token_for):  # type: ignore[no-untyped-def]
    tokens: dict[tuple[str, ...], str] = {}

    def _h(user: str, *roles: str) -> dict[str, str]:
        token = tokens.setdefault((user, *roles), token_for(user, *roles))  # one token per caller
        return {"Authorization": f"Bearer {token}"}

    return _h


def _me(auth, world) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(auth(world.researcher, "researcher", "dac"))


def _create(client, auth, world, files=None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    resp = client.post(
        BASE,
        headers=_me(auth, world),
        json={"job_id": world.job_id, "files": files or list(world.outputs), "justification": "paper"},
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _approved(client, auth, world) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    req = _create(client, auth, world, ["tables/summary.csv"])
    for reviewer in ("dana", "dave"):
        r = client.post(f"{BASE}/{req['id']}/votes", headers=auth(reviewer, "dac"), json={"vote": "approve"})
        assert r.status_code == 201, r.text
    return dict(client.get(f"{BASE}/{req['id']}", headers=_me(auth, world)).json())


def test_a_self_review_vote_refused_while_the_store_fails_is_answered_and_written_later(  # type: ignore[no-untyped-def]
    client, auth, world, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: 503 (the refusal's commit failed) and no ``egress.vote_refused`` entry, ever."""
    rid = _create(client, auth, world)["id"]  # the token's first use is audited here
    with store_refuses_appends(monkeypatch):
        resp = client.post(
            f"{BASE}/{rid}/votes",
            headers=_me(auth, world),
            json={"vote": "approve"},
        )
    assert resp.status_code == 403 and resp.json()["type"] == "urn:tre:problem:self-review", resp.text
    assert _entries(engine, "egress.vote_refused") == []  # kept, not written yet
    assert client.get(BASE, headers=auth("dana", "dac")).status_code == 200
    got = _entries(engine, "egress.vote_refused")
    assert [(e["actor"], e["details"]["reason"], e["details"]["request_id"]) for e in got] == [
        (world.researcher, "self-review", rid)
    ]


def test_a_tampered_download_refused_while_the_store_fails_is_answered_and_written_later(  # type: ignore[no-untyped-def]
    client, auth, world, esettings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GET (a read-only snapshot): was a 503 and no ``egress.download_refused`` entry."""
    req = _approved(client, auth, world)
    frozen = staged_path(esettings.staging_dir, req["files"][0]["sha256"])
    os.chmod(frozen, 0o644)
    frozen.write_bytes(b"group,count\nnodule,3\n")
    with store_refuses_appends(monkeypatch):
        resp = client.get(
            f"{BASE}/{req['id']}/files/{req['files'][0]['id']}",
            headers=_me(auth, world),
        )
    assert resp.status_code == 409 and resp.json()["type"] == "urn:tre:problem:staged-file-altered"
    assert _entries(engine, "egress.download_refused") == []
    assert client.get(BASE, headers=auth("dana", "dac")).status_code == 200
    got = _entries(engine, "egress.download_refused")
    assert [(e["actor"], e["details"]["reason"]) for e in got] == [(world.researcher, "staged-file-altered")]


def test_a_self_review_refused_in_the_panel_while_the_store_fails_is_shown_and_written_later(  # type: ignore[no-untyped-def]
    app, client, auth, world, token_for, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The panel catches the refusal and shows the page again: it was committed with that
    page's transaction (a 503 when that failed, and no entry)."""
    rid = _create(client, auth, world)["id"]
    with TestClient(app) as c:
        login(c, token_for(world.researcher, "researcher", "dac"))
        page = c.get(f"/panel/requests/{rid}")  # the session's first use and the view, audited
        with store_refuses_appends(monkeypatch):
            r = c.post(f"/panel/requests/{rid}/vote", data={"vote": "approve", "csrf": csrf_of(page.text)})
        assert r.status_code == 403 and "requesters never review their own requests" in r.text
        assert _entries(engine, "egress.vote_refused") == []
        assert c.get(f"/panel/requests/{rid}").status_code == 200
    got = _entries(engine, "egress.vote_refused")
    assert [(e["actor"], e["details"]["reason"]) for e in got] == [(world.researcher, "self-review")]


def test_a_refused_vote_keeps_nothing_else_of_its_unit_of_work(  # type: ignore[no-untyped-def]
    client, auth, world, esettings, engine: Engine
) -> None:
    """Called outside the API (`session_scope`, as the CLI's and the node agent's units of
    work): what the unit wrote before the refusal was committed with the entry; now it is
    rolled back and only the entry written, after it."""
    rid = _create(client, auth, world)["id"]
    me = Principal(user_id=world.researcher, roles=frozenset({"researcher", "dac"}))
    with pytest.raises(TreError) as err, session_scope(engine) as s:
        s.add(Review(request_id=rid, reviewer_id="dana", stage="review", vote="approve", comment="forged"))
        workflow.cast_vote(
            s, me, rid, vote="approve", comment="mine", policies_dir=esettings.resolved_policies_dir
        )
    assert err.value.slug == "self-review"
    with session_scope(engine) as s:
        assert s.scalars(select(Review).where(Review.request_id == rid)).all() == []
    assert [e["details"]["reason"] for e in _entries(engine, "egress.vote_refused")] == ["self-review"]


def _refuse_self_review(client, auth, world, esettings) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    rid = _create(client, auth, world)["id"]
    r = client.post(f"{BASE}/{rid}/votes", headers=_me(auth, world), json={"vote": "approve"})
    return r.status_code, "egress.vote_refused"


def _refuse_resolution_by_requester(client, auth, world, esettings) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    rid = _create(client, auth, world)["id"]
    for reviewer, v in (("dana", "approve"), ("dave", "reject")):
        client.post(f"{BASE}/{rid}/votes", headers=auth(reviewer, "dac"), json={"vote": v})
    r = client.post(
        f"{BASE}/{rid}/resolution",
        headers=_me(auth, world),
        json={"decision": "approve", "comment": "mine"},
    )
    return r.status_code, "egress.resolution_refused"


def _refuse_download_before_approval(client, auth, world, esettings) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    req = _create(client, auth, world)
    r = client.get(
        f"{BASE}/{req['id']}/files/{req['files'][0]['id']}",
        headers=_me(auth, world),
    )
    return r.status_code, "egress.download_refused"


def _refuse_tampered_download(client, auth, world, esettings) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    req = _approved(client, auth, world)
    frozen = staged_path(esettings.staging_dir, req["files"][0]["sha256"])
    os.chmod(frozen, 0o644)
    frozen.write_bytes(b"group,count\nnodule,3\n")
    r = client.get(
        f"{BASE}/{req['id']}/files/{req['files'][0]['id']}",
        headers=_me(auth, world),
    )
    return r.status_code, "egress.download_refused"


def _refuse_changed_output(client, auth, world, esettings) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    world.output_path(esettings, "tables/summary.csv").write_bytes(b"group,count\nnodule,121\n")
    r = client.post(
        BASE,
        headers=_me(auth, world),
        json={"job_id": world.job_id, "files": ["tables/summary.csv"], "justification": "paper"},
    )
    return r.status_code, "egress.stage_refused"


def _refuse_withdrawal_by_another(client, auth, world, esettings) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    rid = _create(client, auth, world)["id"]
    r = client.post(f"{BASE}/{rid}/withdrawal", headers=auth("carol", "researcher"), json={"reason": "mine"})
    return r.status_code, "egress.withdraw_refused"


@pytest.mark.parametrize(
    "refuse",
    [
        _refuse_self_review,
        _refuse_resolution_by_requester,
        _refuse_download_before_approval,
        _refuse_tampered_download,
        _refuse_changed_output,
        _refuse_withdrawal_by_another,
    ],
    ids=lambda f: f.__name__.removeprefix("_refuse_"),
)
def test_every_airlock_refusal_over_the_api_is_audited_exactly_once(  # type: ignore[no-untyped-def]
    client, auth, world, esettings, engine: Engine, refuse
) -> None:
    status, action = refuse(client, auth, world, esettings)
    assert status in (403, 409), status
    assert client.get(BASE, headers=auth("dana", "dac")).status_code == 200  # anything kept: written
    assert len(_entries(engine, action)) == 1


def test_a_refusal_in_a_read_only_unit_of_work_is_written_after_it(  # type: ignore[no-untyped-def]
    client, auth, world, esettings, engine: Engine
) -> None:
    """A snapshot cannot write: the entry was appended in it (a loud write error in place of
    the refusal on SQLite); now it is written after it, in a writing unit of its own."""
    req = _create(client, auth, world)
    me = Principal(user_id=world.researcher, roles=frozenset({"researcher"}))
    with pytest.raises(TreError) as err, session_scope(engine, read_only=True) as s:
        workflow.open_release_file(s, esettings, me, req["id"], req["files"][0]["id"])
    assert err.value.slug == "not-approved"
    assert [e["details"]["reason"] for e in _entries(engine, "egress.download_refused")] == ["not-approved"]
