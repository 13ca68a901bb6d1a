"""Round 13: a reviewer's working day in the panel, in Debian Chromium (headless, no sandbox).

Keyboard only (the focus order reaches the queue's request and the vote in a few presses,
and the focus is always drawn), axe-core on the sign-in page, the queue and the request page
(no violations), two reviewers deciding at once, a vote sent on a page whose request was
decided or withdrawn meanwhile (refused in words, the comment kept), a session that ends
mid-vote (the comment kept, and signing in again leads back to the request), and errors as
pages (an unknown request, a forged form), never a JSON document or a traceback.
"""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.egress.test_workflow_support import seed_world

pytestmark = pytest.mark.browser

CSV = {"tables/summary.csv": b"group,count\nnodule,120\nno_nodule,340\n"}


def _request(live, token: str, job_id: str, why: str = "counts for the paper") -> str:  # type: ignore[no-untyped-def]
    resp = httpx.post(
        f"{live.url}/api/v1/egress/requests",
        headers={"Authorization": f"Bearer {token}"},
        json={"job_id": job_id, "files": list(CSV), "justification": why},
        timeout=30.0,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _sign_in(browser, live, token: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live.url}/panel/login")
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/")
    return context, page


def _no_axe_violations(page, where: str) -> None:  # type: ignore[no-untyped-def]
    results = Axe().run(page)
    found = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]
    assert found == [], f"axe-core on {where}: {found}"


def _focus(page) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """What has the keyboard focus, and how its focus ring is drawn."""
    return page.evaluate(
        """() => { const e = document.activeElement; const s = getComputedStyle(e);
        return {tag: e.tagName, id: e.id, cls: e.className, name: e.getAttribute('name'),
                value: e.getAttribute('value'), outline: s.outlineStyle,
                width: parseFloat(s.outlineWidth)}; }"""
    )


def _tab_to(page, matches, limit: int) -> int:  # type: ignore[no-untyped-def]
    """Press Tab until ``matches(focus)``; every element on the way shows its focus."""
    for n in range(1, limit + 1):
        page.keyboard.press("Tab")
        f = _focus(page)
        assert f["outline"] != "none" and f["width"] >= 2, f"focus not visible on {f}"
        if matches(f):
            return n
    raise AssertionError(f"not reached in {limit} Tab presses; last focus {_focus(page)}")


def test_a_review_by_keyboard_alone_with_labels_and_landmarks(
    browser, live, db, esettings, token_for
) -> None:  # type: ignore[no-untyped-def]
    with db.begin() as s:
        world = seed_world(s, esettings, dict(CSV))
    rid = _request(live, token_for(world.researcher, "researcher"), world.job_id)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live.url}/panel/login")
    _no_axe_violations(page, "the sign-in page")
    page.focus("#token")
    page.keyboard.insert_text(token_for("dana", "dac"))
    page.keyboard.press("Tab")
    assert _focus(page)["id"] == "sign-in"
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live.url}/panel/")
    _no_axe_violations(page, "the queue")
    assert page.locator("main").count() == 1 and page.locator("form[role=search] label").count() == 3
    presses = _tab_to(page, lambda f: "req-link" in f["cls"], 30)
    assert presses <= 20, presses  # header, state tabs, the filter form, then the first request
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live.url}/panel/requests/{rid}")
    _no_axe_violations(page, "the request page")
    assert _tab_to(page, lambda f: f["name"] == "vote", 12) <= 8
    page.keyboard.press("Space")  # the first radio: approve
    page.keyboard.press("Tab")
    assert _focus(page)["id"] == "comment"
    page.keyboard.type("counts are aggregate; fine")
    page.keyboard.press("Tab")
    assert _focus(page)["id"] == "submit-vote"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*\?done=voted$"))
    assert "Your vote is recorded" in page.inner_text("#notice")
    assert "counts are aggregate; fine" in page.inner_text("#my-vote")
    context.close()


def test_votes_on_a_page_gone_stale_are_refused_in_words_and_keep_the_comment(  # type: ignore[no-untyped-def]
    browser, live, db, esettings, token_for
) -> None:
    with db.begin() as s:
        world = seed_world(s, esettings, dict(CSV))
    alice = token_for(world.researcher, "researcher")
    decided = _request(live, alice, world.job_id, "decided while dora reads")
    withdrawn = _request(live, alice, world.job_id, "withdrawn while dana reads")
    dora_ctx, dora = _sign_in(browser, live, token_for("dora", "dac"))
    dora.goto(f"{live.url}/panel/requests/{decided}")
    dora.check("input[name=vote][value=reject]")
    dora.fill("#comment", "row 2 is too small to release")
    # dana and dave vote at the same moment (two browsers' sessions, posted in parallel).
    cookies = {}
    for who in ("dana", "dave"):
        ctx, page = _sign_in(browser, live, token_for(who, "dac"))
        page.goto(f"{live.url}/panel/requests/{decided}")
        cookies[who] = ({c["name"]: c["value"] for c in ctx.cookies()}, page.input_value("input[name=csrf]"))
        ctx.close()
    answers: dict[str, int] = {}

    def post(who: str) -> None:
        jar, csrf = cookies[who]
        r = httpx.post(
            f"{live.url}/panel/requests/{decided}/vote",
            cookies=jar,
            data={
                "vote": "approve",
                "comment": f"{who}: fine",
                "csrf": csrf,
                "seen_state": "awaiting_review",
            },
            timeout=30.0,
        )
        answers[who] = r.status_code

    threads = [threading.Thread(target=post, args=(w,)) for w in cookies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {"dana": 303, "dave": 303}  # both recorded: two votes decide it, once
    audrey = {"Authorization": f"Bearer {token_for('audrey', 'auditor')}"}
    got = httpx.get(f"{live.url}/api/v1/egress/requests/{decided}", headers=audrey).json()
    assert got["state"] == "approved" and got["votes_in"] == 2

    # dora's page is stale: her vote is refused in words, her comment kept.
    dora.click("#submit-vote")
    text = dora.inner_text("#error")
    assert "changed while you were reviewing it" in text and "awaiting review" in text and "approved" in text
    assert dora.input_value("#kept-comment") == "row 2 is too small to release"
    assert httpx.get(f"{live.url}/api/v1/egress/requests/{decided}", headers=audrey).json()["votes_in"] == 2

    # A withdrawal while dana reads: the same.
    dana_ctx, dana = _sign_in(browser, live, token_for("dana", "dac"))
    dana.goto(f"{live.url}/panel/requests/{withdrawn}")
    dana.check("input[name=vote][value=approve]")
    dana.fill("#comment", "looked at every row")
    httpx.post(
        f"{live.url}/api/v1/egress/requests/{withdrawn}/withdrawal",
        headers={"Authorization": f"Bearer {alice}"},
        json={"reason": "wrong file"},
    ).raise_for_status()
    dana.click("#submit-vote")
    assert "is withdrawn now" in dana.inner_text("#error")
    assert dana.input_value("#kept-comment") == "looked at every row"
    _no_axe_violations(dana, "a refused vote")

    # A refusal by the rules (not a stale page) keeps the comment in the form itself.
    open_one = _request(live, alice, world.job_id, "still open")
    dana.goto(f"{live.url}/panel/requests/{open_one}")
    dana.check("input[name=vote][value=reject]")
    dana.fill("#comment", "my reasons")
    with db.begin() as s:  # dana joins the project meanwhile: a conflict of interest
        from tre import registry

        registry.add_member(s, world.admin, world.project_id, "dana", force=True)
    dana.click("#submit-vote")
    assert "Nothing was recorded" in dana.inner_text("#error")
    assert dana.input_value("#kept-comment") == "my reasons"
    dora_ctx.close()
    dana_ctx.close()


def test_a_session_ending_mid_vote_keeps_the_comment_and_leads_back(  # type: ignore[no-untyped-def]
    browser, live, db, esettings, token_for
) -> None:
    with db.begin() as s:
        world = seed_world(s, esettings, dict(CSV))
    rid = _request(live, token_for(world.researcher, "researcher"), world.job_id)
    context, page = _sign_in(browser, live, token_for("dana", "dac"))
    page.goto(f"{live.url}/panel/requests/{rid}")
    page.check("input[name=vote][value=approve]")
    page.fill("#comment", "a long, careful comment\nover two lines")
    context.add_cookies(
        [
            {
                "name": "tre_panel_token",
                "value": token_for("dana", "dac", ttl_s=-3600),
                "domain": "127.0.0.1",
                "path": "/panel",
            }
        ]
    )
    page.click("#submit-vote")
    notice = page.inner_text("#session-ended")
    assert "expired" in notice and "not recorded" in notice
    assert page.input_value("#kept-comment") == "a long, careful comment\nover two lines"
    assert page.inner_text("#kept-choice") == "approve"
    _no_axe_violations(page, "the sign-in page after a session ended")
    page.fill("#token", token_for("dana", "dac"))
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/requests/{rid}")  # back where the vote was
    assert page.locator("#vote-form").count() == 1
    context.close()


def test_errors_in_the_panel_are_pages(browser, live, db, esettings, token_for) -> None:  # type: ignore[no-untyped-def]
    with db.begin() as s:
        world = seed_world(s, esettings, dict(CSV))
    rid = _request(live, token_for(world.researcher, "researcher"), world.job_id)
    context, page = _sign_in(browser, live, token_for("dana", "dac"))
    for path, status, words in (
        (f"/panel/requests/{'0' * 32}", 404, "does not exist or is not visible"),
        ("/panel/requests/not-an-id/files/x/render.png", 422, ""),
        (f"/panel/requests/{rid}/vote", 405, "allowed"),
    ):
        answer = page.goto(f"{live.url}{path}")
        assert answer is not None and answer.status == status, (path, answer and answer.status)
        assert answer.headers["content-type"].startswith("text/html")
        body = page.inner_text("body")
        assert "Traceback" not in body and '"type"' not in body
        assert page.inner_text("#error-title") and words in page.inner_text("#error-detail")
        assert page.locator("#back-to-queue").count() == 1
    # A form of our own page whose CSRF token is wrong: nothing recorded, and a page that says
    # why (since newcomer round 20 the request page again, as for a form from before signing in
    # again; a post from another origin is still refused outright:
    # test_panel_session_browser.py::test_a_post_from_another_origin_is_still_refused_and_echoes_nothing).
    page.goto(f"{live.url}/panel/requests/{rid}")
    page.evaluate("() => { for (const e of document.querySelectorAll('input[name=csrf]')) e.value = 'x'; }")
    page.check("input[name=vote][value=approve]")
    with page.expect_navigation() as sent:
        page.click("#submit-vote")
    assert sent.value is not None and sent.value.status == 403
    assert "out of date" in page.inner_text("#error") and "not recorded" in page.inner_text("#error")
    auditor = {"Authorization": f"Bearer {token_for('audrey', 'auditor')}"}
    assert httpx.get(f"{live.url}/api/v1/egress/requests/{rid}", headers=auditor).json()["votes_in"] == 0
    # API clients still get problem documents.
    api = httpx.get(
        f"{live.url}/panel/requests/{'0' * 32}",
        cookies={"tre_panel_token": token_for("dana", "dac")},
        headers={"Accept": "application/json"},
    )
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/problem+json")
    context.close()
