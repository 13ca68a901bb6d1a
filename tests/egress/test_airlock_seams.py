"""The airlock's seams (round 11): a policy changed during a review, and a panel session that
ends while a reviewer works. Real stores (SQLite and PostgreSQL), the real app."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from egress_review import workflow
from tests.egress.test_workflow_support import seed_world, with_egress_routes, write_policy
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import TreError
from tre.store.base import utcnow
from tre.store.db import session_factory, settle
from tre.store.models import AuditEntry, Dataset, User

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
                settle(s, exc)  # as the API ends a refused request: rolled back, entry written
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
        r = c.post(
            "/panel/requests/x/vote",
            data={"vote": "approve", "comment": "kept <b>as text</b>", "csrf": csrf},
            follow_redirects=False,
        )
        # Round 13: answered in place by the sign-in page, with what was written kept.
        assert r.status_code == 401
        shown = r.text
        assert 'id="session-ended"' in shown and "expired" in shown and "not recorded" in shown
        assert "kept &lt;b&gt;as text&lt;/b&gt;</textarea>" in shown
        assert 'name="next" value="/panel/"' in shown  # not a request id: back to the queue
        # A post without our CSRF token echoes nothing.
        forged = c.post("/panel/requests/x/vote", data={"vote": "approve", "comment": "planted", "csrf": "x"})
        assert forged.status_code == 403 and "planted" not in forged.text
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


def _said(html: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}">(.*?)</p>', html, re.S)
    assert m, f"no #{element_id} on the page: {html[:600]}"
    return " ".join(m.group(1).split())


TOKEN_STEP = "ask your administrator for a new one (tre admin token --user YOU --role dac"


def test_each_sign_in_message_says_what_is_wrong_and_what_to_do(
    app, engine, esettings, sworld, token_for
) -> None:
    """Newcomer round 21: a refused token's message said what was wrong and a separate, general
    paragraph what to do; nothing followed Sign out. One message now says both, every time."""
    panel_app = with_egress_routes(app)
    with TestClient(panel_app) as c:
        refusals = {
            "researcher": (
                token_for(sworld.researcher, "researcher"),
                403,
                ("signs you in as researcher", "dac or admin role", "--role dac"),
            ),
            "expired": (token_for("dana", "dac", ttl_s=-3600), 401, ("has expired", TOKEN_STEP)),
            "garbage": ("not-a-token", 401, ("was refused", TOKEN_STEP)),
        }
        for case, (token, status, words) in refusals.items():
            r = login(c, token)
            said = _said(r.text, "login-error")
            assert r.status_code == status and all(w in said for w in words), (case, said)
            assert said.endswith("paste it below."), (case, said)
            assert "Paste your access token" not in r.text, case  # the step is said once, in the message
        token = token_for("dana", "dac")
        login(c, token)
        out = c.post("/panel/logout", data={"csrf": csrf_of(c.get("/panel/").text)}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/panel/login?out=1"
        notice = _said(c.get(out.headers["location"]).text, "signed-out")
        assert notice.startswith("You have signed out") and TOKEN_STEP in notice, notice
        again = _said(login(c, token).text, "login-error")  # the signed-out token, pasted again
        assert "was signed out" in again and TOKEN_STEP in again, again
        ended = _said(c.get("/panel/login?ended=expired").text, "session-ended")
        assert ended.startswith("Your session expired") and TOKEN_STEP in ended, ended
        assert 'id="signed-out"' not in c.get("/panel/login?out=2").text  # fixed words, one value
        # A token minted before its user was last created or enabled (tamper round 17's epoch).
        with session_factory(engine)() as s:
            s.get(User, "dana").tokens_valid_from = utcnow() + timedelta(hours=1)  # type: ignore[union-attr]
            s.commit()
        superseded = _said(login(c, token_for("dana", "dac")).text, "login-error")
        assert "issued before your account was last created or enabled" in superseded, superseded
        assert TOKEN_STEP in superseded, superseded


def test_the_session_cookie_outlives_its_token_so_the_expiry_can_be_named(
    app, esettings, sworld, token_for
) -> None:
    panel_app = with_egress_routes(app)
    with TestClient(panel_app) as c:
        r = login(c, token_for("dana", "dac", ttl_s=600))
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("tre_panel_token="))
        max_age = int(re.search(r"Max-Age=(\d+)", cookie, re.I).group(1))  # type: ignore[union-attr]
        assert max_age > 600


# ---------------------------------------------------------------------------- withdrawal


def withdraw(factory, rid: str, user: str, *roles: str, reason: str = "wrong file"):  # type: ignore[no-untyped-def]
    with factory() as s:
        try:
            req = workflow.withdraw(s, who(user, *(roles or ("researcher",))), rid, reason=reason)
            s.commit()
            return req.state
        except TreError as exc:
            settle(s, exc)  # as the API ends a refused request: rolled back, entry written
            raise


def test_the_requester_withdraws_after_one_vote_and_the_vote_stays_blind(factory, esettings, world) -> None:
    rid = request_all(factory, esettings, world)
    assert vote(factory, esettings, rid, "dana", "reject") == "awaiting_review"
    assert withdraw(factory, rid, world.researcher, reason="named the wrong table") == "withdrawn"
    with factory() as s:
        req = workflow.load_request(s, rid)
        mine = workflow.request_view(s, req, who(world.researcher, "researcher"), keys_dir=esettings.keys_dir)
        assert mine["state"] == "withdrawn" and not mine["votes_revealed"] and mine["votes"] == []
        assert mine["votes_in"] == 1 and not mine["can_download"]
        other = workflow.request_view(s, req, who("dave", "dac"), keys_dir=esettings.keys_dir)
        assert other["votes"] == [] and other["my_vote"] is None and not other["can_vote"]
        record = req.disclosure_record
        assert record is not None and record["outcome"] == "withdrawn" and record["released"] is False
        assert record["decided_by"] == "requester" and record["votes_in"] == 1
        assert record["decisions"] == [] and record["reviewers"] == []  # how dana voted stays hidden
        assert record["withdrawal"]["by"] == world.researcher
        assert record["withdrawal"]["reason"] == "named the wrong table" and record["withdrawal"]["at"]
    (event,) = audited(factory, "egress.withdrawn")
    assert event["request_id"] == rid and event["votes_in"] == 1
    # Final: no vote, no resolution, no second withdrawal, no download.
    with pytest.raises(TreError) as closed:
        vote(factory, esettings, rid, "dave", "approve")
    assert closed.value.slug == "voting-closed"
    with pytest.raises(TreError) as again:
        withdraw(factory, rid, world.researcher)
    assert again.value.status == 409 and again.value.slug == "not-withdrawable"
    with pytest.raises(TreError) as dl, factory() as s:
        workflow.open_release_file(s, esettings, who(world.researcher, "researcher"), rid, 1)
    assert dl.value.slug == "not-approved"


def test_only_the_requester_still_in_the_project_may_withdraw(factory, esettings, world) -> None:
    from tre.store.models import ProjectMember, User, UserRole

    rid = request_all(factory, esettings, world)
    with factory.begin() as s:
        s.add(User(id="carol", display_name="carol", roles=[UserRole(role="researcher")]))
        s.flush()
        s.add(ProjectMember(project_id=world.project_id, user_id="carol"))
    for user, roles, slug in [
        ("carol", ("researcher",), "not-the-requester"),  # a colleague in the same project
        ("dana", ("dac",), "not-the-requester"),  # a reviewer ends a request by rejecting it
        (world.admin, ("admin",), "not-the-requester"),
        (world.researcher, ("dac",), "not-the-requester"),  # the requester without the role
    ]:
        with pytest.raises(TreError) as err:
            withdraw(factory, rid, user, *roles)
        assert (err.value.status, err.value.slug) == (403, slug), user
    with pytest.raises(TreError) as outsider:
        withdraw(factory, rid, world.outsider)  # another project: the request does not exist
    assert outsider.value.status == 404
    with factory.begin() as s:
        row = s.get(ProjectMember, (world.project_id, world.researcher))
        assert row is not None
        s.delete(row)
    with pytest.raises(TreError) as removed:
        withdraw(factory, rid, world.researcher)
    assert removed.value.status == 404  # removed from the project: its requests are not theirs to see
    assert len(audited(factory, "egress.withdraw_refused")) == 4
    with factory() as s:
        assert workflow.load_request(s, rid).state == "awaiting_review"


def test_decided_requests_cannot_be_withdrawn_but_a_conflicted_one_can(factory, esettings, world) -> None:
    rid = request_all(factory, esettings, world)
    vote(factory, esettings, rid, "dana", "approve")
    assert vote(factory, esettings, rid, "dave", "approve") == "approved"
    with pytest.raises(TreError) as err:
        withdraw(factory, rid, world.researcher)
    assert err.value.slug == "not-withdrawable"
    rid2 = request_all(factory, esettings, world)
    vote(factory, esettings, rid2, "dana", "approve")
    assert vote(factory, esettings, rid2, "dave", "reject") == "conflicted"
    assert withdraw(factory, rid2, world.researcher) == "withdrawn"
    with pytest.raises(TreError) as res, factory.begin() as s:
        workflow.resolve(
            s,
            who("dora", "dac"),
            rid2,
            decision="approve",
            comment="ok",
            policies_dir=esettings.resolved_policies_dir,
        )
    assert res.value.slug == "not-conflicted"


def test_a_withdrawal_racing_the_last_vote_decides_once(factory, esettings, world) -> None:
    """Both lock the request row: one wins whole, the other finds it closed."""
    import threading

    outcomes: list[tuple[str, str]] = []
    for _ in range(3):
        rid = request_all(factory, esettings, world)
        vote(factory, esettings, rid, "dana", "approve")
        barrier = threading.Barrier(2)
        errors: dict[str, str] = {}

        def run(name: str, act, rid: str = rid, barrier=barrier, errors=errors) -> None:  # type: ignore[no-untyped-def]
            barrier.wait()
            try:
                act(rid)
            except TreError as exc:
                errors[name] = exc.slug

        threads = [
            threading.Thread(
                target=run, args=("vote", lambda r: vote(factory, esettings, r, "dave", "approve"))
            ),
            threading.Thread(target=run, args=("withdraw", lambda r: withdraw(factory, r, world.researcher))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        with factory() as s:
            req = workflow.load_request(s, rid)
            if req.state == "approved":
                assert errors == {"withdraw": "not-withdrawable"}
                assert len(workflow.review_votes(req)) == 2
            else:
                assert req.state == "withdrawn" and errors == {"vote": "voting-closed"}
                assert len(workflow.review_votes(req)) == 1
            outcomes.append((req.state, str(req.disclosure_record["outcome"])))  # type: ignore[index]
    assert all(state == outcome for state, outcome in outcomes)


def test_withdrawal_through_the_api_cli_and_the_panel(app, esettings, sworld, token_for, monkeypatch) -> None:
    panel_app = with_egress_routes(app)
    researcher = {"Authorization": f"Bearer {token_for(sworld.researcher, 'researcher')}"}
    with TestClient(panel_app) as c:
        r = c.post(
            BASE,
            headers=researcher,
            json={"job_id": sworld.job_id, "files": list(sworld.outputs), "justification": "paper"},
        )
        rid = r.json()["id"]
        dac = {"Authorization": f"Bearer {token_for('dana', 'dac')}"}
        assert c.post(f"{BASE}/{rid}/withdrawal", headers=dac, json={}).status_code == 403
        r = c.post(f"{BASE}/{rid}/withdrawal", headers=researcher, json={"reason": "x" * 2001})
        assert r.status_code == 422
        r = c.post(f"{BASE}/{rid}/withdrawal", headers=researcher, json={"reason": "wrong file"})
        assert r.status_code == 201 and r.json()["state"] == "withdrawn", r.text
        r = c.post(f"{BASE}/{rid}/withdrawal", headers=researcher, json={})
        assert r.status_code == 409 and r.json()["type"] == "urn:tre:problem:not-withdrawable"
        listed = c.get(BASE, headers=researcher, params={"state": "withdrawn"}).json()
        assert [x["id"] for x in listed] == [rid]
        record = c.get(f"{BASE}/{rid}/disclosure", headers=researcher).json()
        assert record["outcome"] == "withdrawn" and record["withdrawal"]["reason"] == "wrong file"
        # Nothing was released: the requester's copy keeps keyed hashes and rounded sizes.
        assert record["hashes_keyed"] is True and all(f["size_rounded"] for f in record["files"])
        login(c, token_for("dave", "dac"))
        queue = c.get("/panel/?show=withdrawn").text
        assert rid in queue
        page = c.get(f"/panel/requests/{rid}").text
        assert 'id="withdrawn"' in page and 'id="vote-form"' not in page


# ---------------------------------------------------------------------------- contradictory policy files


@pytest.mark.parametrize(
    ("text", "field"),
    [
        # The second key silently won: a reader of the file saw 3 reviews, the airlock used 1.
        ("required_reviews: 3\nrequired_reviews: 1\n", "required_reviews"),
        ("text:\n  identifier_action: block\n  identifier_action: allow\n", "text.identifier_action"),
        ("sdc:\n  threshold: 10\nsdc:\n  threshold: 1\n", "sdc"),
    ],
    ids=["top-level", "nested", "whole-section"],
)
def test_a_policy_naming_a_key_twice_is_refused(text: str, field: str) -> None:
    from tre.policy import PolicyError, parse_policy

    with pytest.raises(PolicyError) as err:
        parse_policy(f"name: t\nversion: '1'\n{text}", "t.yaml", expected_name="t")
    assert "more than once" in err.value.reason and err.value.field == field
    assert err.value.line is not None and err.value.line > 3


@pytest.mark.parametrize(
    ("text", "field"),
    [
        # YAML 1.1 reads yes/no/on/off/true as booleans, and a boolean passed as a number: a
        # threshold of `yes` was 1 (no small-cell suppression at all), `required_reviews: on` 1.
        ("sdc:\n  threshold: yes\n", "sdc.threshold"),
        ("required_reviews: on\n", "required_reviews"),
        ("files:\n  max_files: true\n", "files.max_files"),
        ("image:\n  max_width: no\n", "image.max_width"),
    ],
)
def test_a_boolean_where_a_policy_wants_a_number_is_refused(text: str, field: str) -> None:
    from tre.policy import PolicyError, parse_policy

    with pytest.raises(PolicyError) as err:
        parse_policy(f"name: t\nversion: '1'\n{text}", "t.yaml", expected_name="t")
    assert err.value.field == field and "number" in err.value.reason


def test_the_shipped_policies_still_load() -> None:
    from pathlib import Path

    from tre.policy import load_all

    assert {"default", "lidc-demo"} <= set(load_all(Path(__file__).resolve().parents[2] / "policies"))


def test_two_resolutions_at_the_same_moment_settle_once(factory, esettings, world) -> None:
    """Two DAC members (or a member and an admin) resolve one conflict at the same moment:
    one resolution is recorded, the other finds the request no longer conflicted."""
    import threading

    rid = request_all(factory, esettings, world)
    vote(factory, esettings, rid, "dana", "approve")
    assert vote(factory, esettings, rid, "dave", "reject") == "conflicted"
    barrier = threading.Barrier(2)
    errors: list[str] = []

    def settle(user: str, roles: tuple[str, ...], decision: str) -> None:
        barrier.wait()
        try:
            with factory.begin() as s:
                workflow.resolve(
                    s,
                    who(user, *roles),
                    rid,
                    decision=decision,
                    comment=f"{user} settles",
                    policies_dir=esettings.resolved_policies_dir,
                )
        except TreError as exc:
            errors.append(exc.slug)

    threads = [
        threading.Thread(target=settle, args=("dora", ("dac",), "approve")),
        threading.Thread(target=settle, args=(world.admin, ("admin",), "reject")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == ["not-conflicted"]
    with factory() as s:
        req = workflow.load_request(s, rid)
        resolutions = [r for r in req.reviews if r.stage == "resolution"]
        assert (
            len(resolutions) == 1
            and req.state == {"approve": "approved", "reject": "rejected"}[resolutions[0].vote]
        )
        assert req.disclosure_record is not None and req.disclosure_record["outcome"] == req.state
    assert len(audited(factory, "egress.resolved")) == 1


# ---------------------------------------------------------------------------- former members


def test_a_dac_member_removed_from_the_project_still_may_not_review_it(factory, esettings, world) -> None:
    """A researcher of the project who also holds the DAC role was conflicted while a member;
    removed from the project (the day before the vote), they reviewed their former
    colleagues' release as though independent."""
    from tre import registry

    with factory.begin() as s:
        registry.add_member(s, world.admin, world.project_id, "dora")
    rid = request_all(factory, esettings, world)
    with factory.begin() as s:
        registry.remove_member(s, world.admin, world.project_id, "dora")
    err = refused(factory, esettings, rid, "dora", "approve")
    assert (err.status, err.slug) == (403, "self-review") and "were a member" in err.detail
    with factory() as s:
        req = workflow.load_request(s, rid)
        view = workflow.request_view(s, req, who("dora", "dac"), keys_dir=esettings.keys_dir)
        assert not view["can_vote"]
        # The queue's batched facts say the same as the one-request look-up.
        facts = workflow.viewer_facts(s, [req], who("dora", "dac"))
        assert workflow.review_conflict(s, req, who("dora", "dac")) is not None
        assert not workflow.request_view(
            s, req, who("dora", "dac"), keys_dir=esettings.keys_dir, facts=facts
        )["can_vote"]
        with pytest.raises(TreError) as preview:
            workflow.open_for_review(s, esettings, who("dora", "dac"), rid, req.files[0].id)
        assert preview.value.slug == "conflicted-reviewer"
    # Reviewers who never were members are unaffected.
    assert vote(factory, esettings, rid, "dana", "approve") == "awaiting_review"
    assert vote(factory, esettings, rid, "dave", "approve") == "approved"
