"""The DAC panel end to end in a real headless Chromium, against the app served by uvicorn.

Two reviewers sign in with their tokens, see the flagged DICOM header element, vote blind;
then the researcher downloads the release with the CLI. A screenshot of the request page is
left in test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.egress.test_workflow_support import seed_world
from tre.config import reset_settings_cache

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def sign_in(browser, live, token: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live.url}/panel/")
    assert page.url.endswith("/panel/login")  # no cookie: sent to sign in
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/")
    return context, page


def test_reviewers_vote_in_the_panel_and_the_researcher_downloads(
    browser, live, db, esettings, token_for, tmp_path, monkeypatch
) -> None:
    with db.begin() as s:
        world = seed_world(s, esettings)
    researcher = token_for(world.researcher, "researcher")
    resp = httpx.post(
        f"{live.url}/api/v1/egress/requests",
        headers={"Authorization": f"Bearer {researcher}"},
        json={
            "job_id": world.job_id,
            "files": list(world.outputs),
            "justification": "Figure 2 (nodule overview) and a de-identified example slice",
        },
        timeout=30.0,  # the checks (OCR of the figure and the slice) run in the request, as for the CLI
    )
    assert resp.status_code == 201, resp.text
    rid = resp.json()["id"]

    # A token without a reviewer role is turned away at the door.
    ctx0 = browser.new_context()
    p0 = ctx0.new_page()
    p0.goto(f"{live.url}/panel/login")
    p0.fill("#token", researcher)
    p0.click("#sign-in")
    assert "dac or admin role" in p0.inner_text("#login-error")
    ctx0.close()

    # First reviewer.
    ctx1, page = sign_in(browser, live, token_for("dana", "dac"))
    cookies = {c["name"]: c for c in ctx1.cookies()}
    assert cookies["tre_panel_token"]["httpOnly"] and cookies["tre_panel_token"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the token
    page.click(f"a.req-link[data-id='{rid}']")
    page.wait_for_url(f"{live.url}/panel/requests/{rid}")
    flagged = page.locator("tr.flagged[data-keyword='InstitutionName']")
    assert flagged.count() == 1 and "St Elsewhere" in flagged.inner_text()
    assert page.locator("table.data[data-kind='table'] td", has_text="nodule").count() >= 1  # CSV inline
    for img in page.locator("img.render").all():  # the DICOM slice and the PNG rendered server-side
        img.scroll_into_view_if_needed()  # previews load lazily, when scrolled to
        img.wait_for(state="visible")
        page.wait_for_function("i => i.complete", arg=img.element_handle())
        assert img.evaluate("i => i.naturalWidth > 0")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "egress-panel-request.png"), full_page=True)

    # A post without the CSRF token is refused even with the session cookie.
    forged = ctx1.request.post(f"{live.url}/panel/requests/{rid}/vote", form={"vote": "approve"})
    assert forged.status == 403 and "CSRF" in forged.json()["detail"]

    page.check("input[name=vote][value=approve]")
    page.fill("#comment", "Aggregate figure; the slice keeps an institution name — acceptable here.")
    page.click("#submit-vote")
    page.wait_for_selector("#notice")
    assert "1 of 2" in page.inner_text("#votes-count")
    assert page.locator("#votes").count() == 0  # blind: nobody's votes are listed yet
    assert "approve" in page.inner_text("#my-vote")
    ctx1.close()

    # Second reviewer: sees that one vote is in, but not what it was.
    ctx2, page2 = sign_in(browser, live, token_for("dave", "dac"))
    page2.goto(f"{live.url}/panel/requests/{rid}")
    assert "1 of 2" in page2.inner_text("#votes-count")
    assert "Aggregate figure" not in page2.content()
    page2.check("input[name=vote][value=approve]")
    page2.fill("#comment", "Agree.")
    page2.click("#submit-vote")
    page2.wait_for_selector("#votes")
    assert page2.inner_text("#state") == "approved"
    assert {"dana", "dave"} <= set(page2.inner_text("#votes").split())
    page2.screenshot(path=str(ARTIFACTS / "egress-panel-approved.png"), full_page=True)
    ctx2.close()

    # The researcher downloads with the CLI: files verified against the released hashes.
    from tre.cli.egress import app as egress_cli

    monkeypatch.setenv("TRE_API_URL", live.url)
    monkeypatch.setenv("TRE_TOKEN", researcher)
    reset_settings_cache()
    dest = tmp_path / "release"
    result = CliRunner().invoke(egress_cli, ["download", rid, "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    for rel, data in world.outputs.items():
        assert (dest / rel).read_bytes() == data
    record = json.loads((dest / f"disclosure-{rid}.json").read_text())
    assert record["released"] and {f["sha256"] for f in record["files"]} == {
        hashlib.sha256(b).hexdigest() for b in world.outputs.values()
    }
