"""A panel session that ends while the reviewer works, in a real headless Chromium: the page
said when it would end, and the vote sent after it ended is answered by a sign-in page saying
the session expired and the vote was not recorded, with the comment kept to paste (before: a
bare sign-in page, the vote gone)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.egress.test_workflow_support import seed_world

pytestmark = pytest.mark.browser


def test_an_expired_session_is_visible_and_the_lost_vote_named(
    browser, live, db, esettings, token_for
) -> None:
    with db.begin() as s:
        world = seed_world(s, esettings, {"tables/summary.csv": b"group,count\nnodule,120\nno_nodule,340\n"})
    resp = httpx.post(
        f"{live.url}/api/v1/egress/requests",
        headers={"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"},
        json={"job_id": world.job_id, "files": ["tables/summary.csv"], "justification": "counts"},
        timeout=30.0,
    )
    assert resp.status_code == 201, resp.text
    rid = resp.json()["id"]
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live.url}/panel/login")
    page.fill("#token", token_for("dana", "dac"))
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/")
    assert re.fullmatch(r"session ends (\d{4}-\d\d-\d\d )?\d\d:\d\d UTC", page.inner_text("#session-ends"))
    page.goto(f"{live.url}/panel/requests/{rid}")
    page.check("input[name=vote][value=approve]")
    page.fill("#comment", "counts are fine")
    # The session ends while the reviewer reads: the browser still holds the (expired) token.
    context.add_cookies(
        [
            {
                "name": "tre_panel_token",
                "value": token_for("dana", "dac", ttl_s=-3600),
                "domain": "127.0.0.1",
                "path": "/panel",  # the same cookie the sign-in set, replaced
            }
        ]
    )
    page.click("#vote-form button[type=submit]")
    # The sign-in page answers the post itself (round 13), so what was written is kept.
    notice = page.inner_text("#session-ended")
    assert "expired" in notice and "not recorded" in notice
    assert page.input_value("#kept-comment") == "counts are fine"
    r = httpx.get(
        f"{live.url}/api/v1/egress/requests/{rid}",
        headers={"Authorization": f"Bearer {token_for('audrey', 'auditor')}"},
    )
    assert r.json()["votes_in"] == 0
    context.close()


def test_the_back_button_after_sign_out_shows_no_review_page(browser, live, db, esettings, token_for) -> None:
    """A reviewer signs out on a shared workstation; the next person presses Back: the request
    page (file names, findings) must not come back from the browser's caches."""
    with db.begin() as s:
        world = seed_world(s, esettings, {"tables/summary.csv": b"group,count\nnodule,120\nno_nodule,340\n"})
    resp = httpx.post(
        f"{live.url}/api/v1/egress/requests",
        headers={"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"},
        json={"job_id": world.job_id, "files": ["tables/summary.csv"], "justification": "Secret-ish counts"},
        timeout=30.0,
    )
    rid = resp.json()["id"]
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live.url}/panel/login")
    page.fill("#token", token_for("dana", "dac"))
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/")
    page.goto(f"{live.url}/panel/requests/{rid}")
    assert "Secret-ish counts" in page.content()
    page.click("header form button[type=submit]")  # Sign out
    page.wait_for_url(f"{live.url}/panel/login?out=1")
    page.go_back()
    page.wait_for_load_state()
    assert "Secret-ish counts" not in page.content() and "tables/summary.csv" not in page.content()
    assert page.url.split("?")[0].endswith("/panel/login")
    context.close()


def _request(live, world, token_for, why: str) -> str:  # type: ignore[no-untyped-def]
    resp = httpx.post(
        f"{live.url}/api/v1/egress/requests",
        headers={"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"},
        json={"job_id": world.job_id, "files": ["tables/summary.csv"], "justification": why},
        timeout=30.0,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _sign_in(page, live, token: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/panel/login")
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/")


def test_a_form_from_before_signing_in_again_keeps_what_was_written(
    browser, live, db, esettings, token_for
) -> None:
    """Round 20 (newcomer, two tabs): a reviewer writes a vote in one tab, signs out and in
    again in another (the CSRF token rotates), then sends the first tab's vote: the panel
    answered "Cross-site request refused ... reload the page", and the comment was gone (a
    reload re-posts the same stale form). Sign out from an old tab was refused the same way,
    leaving the reviewer signed in. Now the request page says the form was out of date, keeps
    the choice and comment in the form, and sending it again records the vote; an old tab's
    Sign out signs out."""
    with db.begin() as s:
        world = seed_world(s, esettings, {"tables/summary.csv": b"group,count\nnodule,120\nno_nodule,340\n"})
    rid = _request(live, world, token_for, "counts")
    context = browser.new_context()
    first = context.new_page()
    _sign_in(first, live, token_for("dana", "dac"))
    first.goto(f"{live.url}/panel/requests/{rid}")
    first.check("input[name=vote][value=reject]")
    first.fill("#comment", "row no_nodule is fine but nodule needs rounding")
    second = context.new_page()
    second.goto(f"{live.url}/panel/")
    second.click("header form button[type=submit]")  # Sign out
    second.wait_for_url(f"{live.url}/panel/login?out=1")
    _sign_in(second, live, token_for("dana", "dac"))

    with first.expect_navigation() as sent:
        first.click("#vote-form button[type=submit]")
    assert sent.value is not None and sent.value.status == 403
    assert "out of date" in first.inner_text("#error") and "not recorded" in first.inner_text("#error")
    assert first.input_value("#comment") == "row no_nodule is fine but nodule needs rounding"
    assert first.is_checked("input[name=vote][value=reject]")
    auditor = {"Authorization": f"Bearer {token_for('audrey', 'auditor')}"}
    assert httpx.get(f"{live.url}/api/v1/egress/requests/{rid}", headers=auditor).json()["votes_in"] == 0
    first.click("#vote-form button[type=submit]")  # the same words, sent again: recorded
    first.wait_for_url(f"{live.url}/panel/requests/{rid}?done=voted")
    assert httpx.get(f"{live.url}/api/v1/egress/requests/{rid}", headers=auditor).json()["votes_in"] == 1

    # The old tab's Sign out, after another sign-in in the second tab: signed out.
    old = context.new_page()
    old.goto(f"{live.url}/panel/")
    _sign_in(second, live, token_for("dana", "dac"))
    old.click("header form button[type=submit]")
    old.wait_for_url(f"{live.url}/panel/login?out=1")
    second.goto(f"{live.url}/panel/")
    assert second.url.startswith(f"{live.url}/panel/login")
    context.close()


def test_a_post_from_another_origin_is_still_refused_and_echoes_nothing(
    live, db, esettings, token_for
) -> None:
    """The kept words are for our own page's form only: a post naming another origin, or no
    origin, with a wrong token is refused as before and echoes nothing it carried."""
    with db.begin() as s:
        world = seed_world(s, esettings, {"tables/summary.csv": b"group,count\nnodule,120\nno_nodule,340\n"})
    rid = _request(live, world, token_for, "counts")
    with httpx.Client(base_url=live.url) as client:
        client.post(
            "/panel/login", data={"token": token_for("dana", "dac")}
        )  # no csrf: refused, sets nothing
        page = client.get("/panel/login")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        signed = client.post("/panel/login", data={"token": token_for("dana", "dac"), "csrf": csrf})
        assert signed.status_code == 303
        for origin in ("https://evil.example", None):
            headers = {"Origin": origin} if origin else {}
            r = client.post(
                f"/panel/requests/{rid}/vote",
                data={"vote": "approve", "comment": "<b>planted words</b>", "csrf": "stale"},
                headers={**headers, "Accept": "text/html"},
            )
            assert r.status_code == 403 and "planted words" not in r.text, (origin, r.text[:300])


def test_a_reviewers_day_in_their_own_words(browser, live, db, esettings, token_for) -> None:
    """Newcomer round 21, in Chromium: a researcher's token is turned away with one message
    that says what to do (the advice was a separate paragraph); the queue marks the reviewer's
    own vote as "your vote: approve" (it read "you: review: approve", the stage's internal
    name); Sign out ends on a page that says so and how to review again (it said nothing)."""
    with db.begin() as s:
        world = seed_world(s, esettings, {"tables/summary.csv": b"group,count\nnodule,120\nno_nodule,340\n"})
    rid = _request(live, world, token_for, "counts for table 2")
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live.url}/panel/login")
    page.fill("#token", token_for(world.researcher, "researcher"))
    page.click("#sign-in")
    said = page.inner_text("#login-error")
    assert "signs you in as researcher" in said and "--role dac" in said and "paste it below" in said
    assert page.get_by_text("Paste your access token").count() == 0  # said once, in the message

    _sign_in(page, live, token_for("dana", "dac"))
    page.goto(f"{live.url}/panel/requests/{rid}")
    page.check("input[name=vote][value=approve]")
    page.click("#vote-form button[type=submit]")
    page.wait_for_url(f"{live.url}/panel/requests/{rid}?done=voted")
    page.goto(f"{live.url}/panel/?show=mine")
    marker = page.inner_text(f"tr[data-id='{rid}'] .mine")
    assert marker == "your vote: approve", marker

    page.click("header form button[type=submit]")  # Sign out
    page.wait_for_url(f"{live.url}/panel/login?out=1")
    notice = page.get_by_role("status").inner_text()
    assert notice.startswith("You have signed out") and "no longer works" in notice, notice
    assert "tre admin token --user YOU --role dac" in notice
    context.close()
