"""The panel and the API reference attacked in a real Chromium against the app under uvicorn.

Stored XSS: every field a researcher or their job controls that the panel renders (output
file names, table cells, text, DICOM header values, the justification, a reviewer's comment,
the query string) carries markup; no script runs (``window.__xss`` stays unset), and, so the
Content-Security-Policy does not hide an escaping bug, no injected element exists in the
page: the payloads are shown as text. Cross-site request forgery: a page on another origin
that auto-posts a vote form records nothing. The API reference at /docs renders with every
request kept on this origin and no policy violation.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.egress.test_workflow_support import dicom_bytes, seed_world
from tests.ports import free_port

pytestmark = pytest.mark.browser

XSS = '"><img src=x onerror="window.__xss=1"><script>window.__xss=2</script><svg onload="window.__xss=3">'
INJECTED = "script, img[src='x'], svg, [onerror], [onload]"


def _hostile_outputs() -> dict[str, bytes]:
    return {
        f"tables/{XSS.replace('/', '_')}.csv": f"group,count\n{XSS.replace(',', ';')},120\nb,340\n".encode(),
        "notes/readme.txt": f"summary {XSS}\n".encode(),
        "dicom/slice.dcm": dicom_bytes(patient_name=XSS[:60], patient_id="<b>x</b>"),
    }


def _signed_in(browser, live, token: str):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live.url}/panel/login")
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/")
    return context, page


def _no_script_ran(page) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate("window.__xss") is None, page.url
    assert page.evaluate(f'document.querySelectorAll("{INJECTED}").length') == 0, page.url


def test_nothing_a_researcher_wrote_runs_in_a_reviewers_browser_nor_another_origin_votes(
    browser, live, db, esettings, token_for, attacker_site
) -> None:  # type: ignore[no-untyped-def]
    with db.begin() as s:
        world = seed_world(s, esettings, outputs=_hostile_outputs())
    researcher = {"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"}
    body = {"job_id": world.job_id, "files": list(world.outputs), "justification": XSS}
    resp = httpx.post(f"{live.url}/api/v1/egress/requests", headers=researcher, json=body, timeout=30.0)
    assert resp.status_code == 201, resp.text
    rid = resp.json()["id"]

    ctx, page = _signed_in(browser, live, token_for("dana", "dac"))
    _forged_votes_are_refused(page, live, rid, attacker_site)
    page.goto(f"{live.url}/panel/")
    _no_script_ran(page)
    assert XSS[:40] in page.inner_text("body")  # the justification, shown as text
    page.goto(f"{live.url}/panel/requests/{rid}?done={XSS}&show={XSS}")
    _no_script_ran(page)
    text = page.inner_text("body")
    assert "summary " + XSS[:30] in text  # the text file
    assert XSS[:30].replace("/", "_") in text  # the file name
    page.check("input[name=vote][value=approve]")
    page.fill("#comment", XSS)
    page.click("#submit-vote")
    page.wait_for_selector("#notice")
    _no_script_ran(page)
    ctx.close()

    # The next reviewer reads the first one's comment once the votes are in.
    ctx2, page2 = _signed_in(browser, live, token_for("dave", "dac"))
    page2.goto(f"{live.url}/panel/requests/{rid}")
    page2.check("input[name=vote][value=approve]")
    page2.fill("#comment", "ok")
    page2.click("#submit-vote")
    page2.wait_for_selector("#votes")
    assert XSS[:40] in page2.inner_text("#votes")
    _no_script_ran(page2)
    ctx2.close()


@pytest.fixture
def attacker_site() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A page on another origin (another port of loopback: same site, other origin)."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pages
    server.shutdown()


def _forged_votes_are_refused(page, live, rid: str, attacker_site) -> None:  # type: ignore[no-untyped-def]
    """Another origin's page auto-posts a vote form, without a CSRF token and with a guessed
    one, while the reviewer is signed in: neither vote is recorded."""
    site, pages = attacker_site
    guessed = '<input name="csrf" value="' + "A" * 43 + '">'
    for name, extra in (("blank", ""), ("guessed", guessed)):
        pages[f"/{name}"] = (
            f'<form id="f" method="post" action="{live.url}/panel/requests/{rid}/vote">'
            f'<input name="vote" value="approve">{extra}</form>'
            '<script>document.getElementById("f").submit()</script>'
        ).encode()
        with page.expect_navigation(url=f"{live.url}/**"):
            page.goto(f"{site}/{name}")
    page.goto(f"{live.url}/panel/requests/{rid}")
    assert page.locator("#my-vote").count() == 0  # no vote of dana's recorded
    assert "0 of 2" in page.inner_text("#votes-count")


def test_the_api_reference_renders_from_this_origin_only(browser, live) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    elsewhere: list[str] = []
    violations: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(live.url) else elsewhere.append(r.url))
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(f"{live.url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    assert page.locator(".opblock-summary-path", has_text="/api/v1/jobs").count() >= 1
    assert elsewhere == [] and violations == [], (elsewhere, violations)
    context.close()
