"""The airlock's seams (round 11): a policy changed during a review, and a panel session that
ends while a reviewer works. Real stores (SQLite and PostgreSQL), the real app."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from egress_review import workflow
from tests.egress.test_workflow_support import seed_world, with_egress_routes, write_policy
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import TreError
from tre.store.db import session_factory
from tre.store.models import AuditEntry, Dataset

BASE = "/api/v1/egress/requests"


def who(user_id: str, *roles: str) -> Principal:
    return Principal(user_id=user_id, roles=frozenset(roles))


def request_all(factory: sessionmaker[Session], settings: Settings, world) -> str:  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        return workflow.create_request(
            s,
            settings,
            who(world.researcher, "researcher"),
            job_id=world.job_id,
            paths=list(world.outputs),
            justification="figures for the paper",
        ).id


def vote(factory, settings: Settings, rid: str, user: str, v: str):  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        return workflow.cast_vote(
            s,
            who(user, "dac"),
            rid,
            vote=v,
            comment=f"{user} says {v}",
            policies_dir=settings.resolved_policies_dir,
        ).state


def refused(factory, settings: Settings, rid: str, user: str, v: str) -> TreError:  # type: ignore[no-untyped-def]
    with pytest.raises(TreError) as err:
        with factory() as s:
            try:
                workflow.cast_vote(
                    s, who(user, "dac"), rid, vote=v, comment="x", policies_dir=settings.resolved_policies_dir
                )
                s.commit()
            except TreError as exc:
                if exc.audited:
                    s.commit()
                raise
    return err.value


def audited(factory, action: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    with factory() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.idx)).all()
        return [json.loads(r.body).get("details") or {} for r in rows if r.action == action]


@pytest.fixture
def factory(engine_any):  # type: ignore[no-untyped-def]
    return session_factory(engine_any)


@pytest.fixture
def world(factory, esettings):  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        return seed_world(s, esettings)


@pytest.fixture
def sworld(db, esettings):  # type: ignore[no-untyped-def]
    """The world in the store the app fixture serves (SQLite)."""
    with db.begin() as s:
        return seed_world(s, esettings)


# ---------------------------------------------------------------------------- policy changes


@pytest.mark.parametrize(
    "change",
    ["stricter-reviews", "new-version", "dataset-moved-to-another-policy"],
)
def test_an_approval_under_a_policy_changed_since_the_checks_is_refused(
    factory, esettings, world, change
) -> None:
    """The DAC tightens a dataset's policy while a request waits: the request's checks and its
    required number of reviews were the old rules'. Before, two approvals still released it."""
    rid = request_all(factory, esettings, world)
    assert vote(factory, esettings, rid, "dana", "approve") == "awaiting_review"
    folder = esettings.resolved_policies_dir
    if change == "stricter-reviews":
        write_policy(folder, reviews=3)  # same name and version, different text
    elif change == "new-version":
        write_policy(folder, version="4")
    else:
        with factory.begin() as s:
            ds = s.get(Dataset, world.dataset_id)
            assert ds is not None
            ds.policy = "strict3"
    err = refused(factory, esettings, rid, "dave", "approve")
    assert err.status == 409 and err.slug == "policy-changed"
    assert "egress-test" in err.detail and "ask again" in err.detail
    with factory() as s:
        req = workflow.load_request(s, rid)
        assert req.state == "awaiting_review" and len(workflow.review_votes(req)) == 1
    assert [d["reason"] for d in audited(factory, "egress.vote_refused")] == ["policy-changed"]
    # Rejecting stays possible: a request checked under old rules can always be closed.
    assert vote(factory, esettings, rid, "dave", "reject") == "conflicted"
    with pytest.raises(TreError) as res_err:
        with factory.begin() as s:
            workflow.resolve(
                s,
                who("dora", "dac"),
                rid,
                decision="approve",
                comment="fine",
                policies_dir=esettings.resolved_policies_dir,
            )
    assert res_err.value.slug == "policy-changed"
    with factory.begin() as s:
        req = workflow.resolve(
            s, who("dora", "dac"), rid, decision="reject", comment="old rules", policies_dir=folder
        )
        assert req.state == "rejected"


def test_a_policy_that_no_longer_loads_refuses_the_approval(factory, esettings, world) -> None:
    rid = request_all(factory, esettings, world)
    (esettings.resolved_policies_dir / "egress-test.yaml").write_text("required_reviews: [oops\n")
    err = refused(factory, esettings, rid, "dana", "approve")
    assert err.status == 409 and err.slug == "policy-unavailable"
    # Fixed words to the reviewer, not the loader's error quoting the file.
    assert "oops" not in err.detail


def test_an_unchanged_policy_rewritten_byte_for_byte_still_releases(factory, esettings, world) -> None:
    rid = request_all(factory, esettings, world)
    write_policy(esettings.resolved_policies_dir)  # the same text again
    assert vote(factory, esettings, rid, "dana", "approve") == "awaiting_review"
    assert vote(factory, esettings, rid, "dave", "approve") == "approved"


def test_the_api_and_the_panel_refuse_an_approval_under_a_changed_policy(
    app, esettings, sworld, token_for
) -> None:
    panel_app = with_egress_routes(app)
    with TestClient(panel_app) as c:
        r = c.post(
            BASE,
            headers={"Authorization": f"Bearer {token_for(sworld.researcher, 'researcher')}"},
            json={"job_id": sworld.job_id, "files": list(sworld.outputs), "justification": "paper"},
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        write_policy(esettings.resolved_policies_dir, reviews=3)
        r = c.post(
            f"{BASE}/{rid}/votes",
            headers={"Authorization": f"Bearer {token_for('dana', 'dac')}"},
            json={"vote": "approve", "comment": "ok"},
        )
        assert r.status_code == 409 and r.json()["type"] == "urn:tre:problem:policy-changed", r.text
        page = login(c, token_for("dave", "dac"))
        assert page.status_code == 303
        html = c.get(f"/panel/requests/{rid}").text
        r = c.post(f"/panel/requests/{rid}/vote", data={"vote": "approve", "csrf": csrf_of(html)})
        assert r.status_code == 409 and "Policy changed" in r.text
        # The request page says it before anyone votes.
        assert 'id="policy-changed"' in c.get(f"/panel/requests/{rid}").text


# ---------------------------------------------------------------------------- panel sessions


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the form"
    return m.group(1)


def login(c: TestClient, token: str):  # type: ignore[no-untyped-def]
    page = c.get("/panel/login")
    return c.post("/panel/login", data={"token": token, "csrf": csrf_of(page.text)}, follow_redirects=False)


def test_an_expired_panel_session_is_named_not_silent(app, esettings, sworld, token_for) -> None:
    """Before, an expired session sent the reviewer to a bare sign-in page, and a vote posted
    after expiry vanished without a word."""
    panel_app = with_egress_routes(app)
    with TestClient(panel_app) as c:
        assert login(c, token_for("dana", "dac")).status_code == 303
        page = c.get("/panel/")
        assert page.status_code == 200
        # Every page says when the session ends.
        assert re.search(r'id="session-ends"[^>]*>[^<]*\d\d:\d\d UTC', page.text), page.text[:800]
        csrf = csrf_of(page.text)
        c.cookies.set("tre_panel_token", token_for("dana", "dac", ttl_s=-3600), path="/panel")
        r = c.get("/panel/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/panel/login?ended=expired"
        r = c.post("/panel/requests/x/vote", data={"vote": "approve", "csrf": csrf}, follow_redirects=False)
        assert r.headers["location"] == "/panel/login?ended=expired&lost=1"
        shown = c.get(r.headers["location"]).text
        assert 'id="session-ended"' in shown and "expired" in shown and "not recorded" in shown
        # Only fixed words: whatever the query says is never echoed.
        odd = c.get("/panel/login?ended=<b>pwned</b>&lost=<i>x</i>").text
        assert "pwned" not in odd and 'id="session-ended"' not in odd


def test_a_signed_out_session_says_so(app, esettings, sworld, token_for) -> None:
    panel_app = with_egress_routes(app)
    with TestClient(panel_app) as c:
        token = token_for("dana", "dac")
        login(c, token)
        page = c.get("/panel/")
        c.post("/panel/logout", data={"csrf": csrf_of(page.text)})
        c.cookies.set("tre_panel_token", token, path="/panel")  # a copy of the old cookie
        r = c.get("/panel/", follow_redirects=False)
        assert r.headers["location"] == "/panel/login?ended=signed-out"
        assert "signed out" in c.get(r.headers["location"]).text


def test_the_session_cookie_outlives_its_token_so_the_expiry_can_be_named(
    app, esettings, sworld, token_for
) -> None:
    panel_app = with_egress_routes(app)
    with TestClient(panel_app) as c:
        r = login(c, token_for("dana", "dac", ttl_s=600))
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("tre_panel_token="))
        max_age = int(re.search(r"Max-Age=(\d+)", cookie, re.I).group(1))  # type: ignore[union-attr]
        assert max_age > 600
