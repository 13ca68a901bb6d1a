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
    page.wait_for_url(f"{live.url}/panel/login")
    page.go_back()
    page.wait_for_load_state()
    assert "Secret-ish counts" not in page.content() and "tables/summary.csv" not in page.content()
    assert page.url.split("?")[0].endswith("/panel/login")
    context.close()
