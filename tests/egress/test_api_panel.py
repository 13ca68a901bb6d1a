"""The review panel's guards without a browser: sign-in, roles, CSRF, headers, admin limits."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.egress.test_workflow_support import seed_world, with_egress_routes
from tre.store.models import AuditEntry, Job, UserRole

BASE = "/api/v1/egress/requests"


@pytest.fixture
def world(db, esettings):  # type: ignore[no-untyped-def]
    with db.begin() as s:
        return seed_world(s, esettings)


@pytest.fixture
def panel_app(app, esettings):  # type: ignore[no-untyped-def]
    return with_egress_routes(app)


@pytest.fixture
def rid(panel_app, world, token_for) -> str:  # type: ignore[no-untyped-def]
    with TestClient(panel_app) as c:
        r = c.post(
            BASE,
            headers={"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"},
            json={"job_id": world.job_id, "files": list(world.outputs), "justification": "paper"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the form"
    return m.group(1)


def login(c: TestClient, token: str):  # type: ignore[no-untyped-def]
    page = c.get("/panel/login")
    return c.post("/panel/login", data={"token": token, "csrf": csrf_of(page.text)}, follow_redirects=False)


def test_anonymous_is_sent_to_sign_in_and_non_reviewers_are_turned_away(panel_app, world, token_for) -> None:
    with TestClient(panel_app) as c:
        r = c.get("/panel/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/panel/login"
        r = login(c, token_for(world.researcher, "researcher"))
        assert r.status_code == 403 and "dac or admin role" in r.text and "tre_panel_token" not in c.cookies
        r = login(c, "not-a-jwt")
        assert r.status_code == 401 and "malformed token" in r.text
        # A cookie holding a researcher's token is refused on every page, not just at sign-in.
        c.cookies.set("tre_panel_token", token_for(world.researcher, "researcher"), path="/panel")
        r = c.get("/panel/", follow_redirects=False)
        assert r.status_code == 403 and r.json()["type"] == "urn:tre:problem:missing-role"


def test_sign_in_sets_strict_http_only_cookies_secure_on_https(panel_app, world, token_for) -> None:
    with TestClient(panel_app, base_url="https://testserver") as c:
        r = login(c, token_for("dana", "dac"))
        assert r.status_code == 303 and r.headers["location"] == "/panel/"
        cookies = r.headers.get_list("set-cookie")
        token_cookie = next(h for h in cookies if h.startswith("tre_panel_token="))
        for attr in ("HttpOnly", "Secure", "SameSite=strict", "Path=/panel"):
            assert attr.lower() in token_cookie.lower(), (attr, token_cookie)
        page = c.get("/panel/")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        out = c.post("/panel/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
        assert out.status_code == 303
        assert c.get("/panel/", follow_redirects=False).status_code == 303


def test_vote_form_needs_csrf_and_same_origin(panel_app, world, token_for, rid) -> None:
    with TestClient(panel_app) as c:
        login(c, token_for("dana", "dac"))
        page = c.get(f"/panel/requests/{rid}")
        token = csrf_of(page.text)
        r = c.post(f"/panel/requests/{rid}/vote", data={"vote": "approve", "csrf": "x" * 43})
        assert r.status_code == 403 and r.json()["type"] == "urn:tre:problem:csrf-mismatch"
        r = c.post(
            f"/panel/requests/{rid}/vote",
            data={"vote": "approve", "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403 and r.json()["type"] == "urn:tre:problem:csrf-origin"
        r = c.post(
            f"/panel/requests/{rid}/vote", data={"vote": "approve", "csrf": token}, follow_redirects=False
        )
        assert r.status_code == 303 and r.headers["location"].endswith("?done=voted")
        again = c.post(f"/panel/requests/{rid}/vote", data={"vote": "approve", "csrf": token})
        assert again.status_code == 409 and "already voted" in again.text


def test_requester_who_is_also_dac_cannot_vote_in_the_panel(panel_app, db, world, token_for, rid) -> None:
    with db.begin() as s:
        s.add(UserRole(user_id=world.researcher, role="dac"))
    with TestClient(panel_app) as c:
        login(c, token_for(world.researcher, "researcher", "dac"))
        page = c.get(f"/panel/requests/{rid}")
        assert 'id="vote-form"' not in page.text
        r = c.post(f"/panel/requests/{rid}/vote", data={"vote": "approve", "csrf": csrf_of(page.text)})
        assert r.status_code == 403 and "requesters never review their own requests" in r.text
    with db() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry))]
        # the refusal page is audited twice: by the airlock, and by the refusal middleware
        # after the answer (it must not wait on the page's own transaction: that stalled once)
        assert "egress.vote_refused" in actions and "auth.refused" in actions


def test_admin_reads_but_only_resolves(panel_app, world, token_for, rid) -> None:
    with TestClient(panel_app) as c:
        login(c, token_for(world.admin, "admin"))
        page = c.get(f"/panel/requests/{rid}")
        assert page.status_code == 200 and 'id="vote-form"' not in page.text
        r = c.post(f"/panel/requests/{rid}/vote", data={"vote": "approve", "csrf": csrf_of(page.text)})
        assert r.status_code == 403
        for reviewer, v in (("dana", "approve"), ("dave", "reject")):
            c.post(
                f"{BASE}/{rid}/votes",
                headers={"Authorization": f"Bearer {token_for(reviewer, 'dac')}"},
                json={"vote": v},
            )
        page = c.get(f"/panel/requests/{rid}")
        assert 'id="resolve-form"' in page.text and "conflicted" in page.text
        assert 'id="needs-resolution"' not in page.text  # the admin has the form instead
        with TestClient(panel_app) as voter:  # a voter is told who settles it (newcomer round 23)
            login(voter, token_for("dana", "dac"))
            seen = voter.get(f"/panel/requests/{rid}").text
            assert 'id="needs-resolution"' in seen and f"tre egress resolve {rid[:12]}" in seen
            assert "file(s)" not in seen and re.search(r'id="decision-counts">\s*\d+ files?:', seen)
        r = c.post(
            f"/panel/requests/{rid}/resolve",
            follow_redirects=False,
            data={"decision": "approve", "comment": "aggregate only", "csrf": csrf_of(page.text)},
        )
        assert r.status_code == 303
        done = c.get(f"/panel/requests/{rid}")
        assert 'id="resolution"' in done.text and "aggregate only" in done.text
        record = c.get(f"/panel/requests/{rid}/disclosure.json").json()
        assert record["decided_by"] == "resolution" and record["released"] is True


def test_previews_are_rendered_server_side(panel_app, world, token_for, rid) -> None:
    with TestClient(panel_app) as c:
        login(c, token_for("dora", "dac"))
        view = c.get(f"{BASE}/{rid}", headers={"Authorization": f"Bearer {token_for('dora', 'dac')}"}).json()
        ids = {f["path"]: f["id"] for f in view["files"]}
        for path in ("dicom/slice.dcm", "figures/overview.png"):
            png = c.get(f"/panel/requests/{rid}/files/{ids[path]}/render.png")
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
        csv = c.get(f"/panel/requests/{rid}/files/{ids['tables/summary.csv']}/render.png")
        assert csv.status_code == 415
        queue = c.get("/panel/?show=all")
        assert rid[:12] in queue.text and "your vote needed" in queue.text
        assert c.get(f"/panel/requests/{rid}").status_code == 200


def test_reviewer_page_views_are_audited(panel_app, db, world, token_for, rid) -> None:
    with TestClient(panel_app) as c:
        login(c, token_for("dora", "dac"))
        assert c.get(f"/panel/requests/{rid}").status_code == 200
    with db() as s:
        viewed = [e for e in s.scalars(select(AuditEntry)) if e.action == "egress.viewed"]
    assert len(viewed) == 1 and viewed[0].actor == "dora"
    assert set(json.loads(viewed[0].body)["details"]["files"]) == set(world.outputs)


def test_researcher_content_is_escaped_in_the_panel(panel_app, db, esettings, token_for) -> None:
    payload = "<script>alert('x')</script>"
    with db.begin() as s:
        world = seed_world(s, esettings, {"t.csv": f"group,count\n{payload},40\n".encode()})
    with TestClient(panel_app) as c:
        r = c.post(
            BASE,
            headers={"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"},
            json={"job_id": world.job_id, "files": ["t.csv"], "justification": f"why {payload}"},
        )
        assert r.status_code == 201, r.text
        login(c, token_for("dana", "dac"))
        page = c.get(f"/panel/requests/{r.json()['id']}").text
        assert payload not in page
        assert "&lt;script&gt;" in page


def test_request_page_names_the_jobs_image_and_code(panel_app, db, world, token_for, rid) -> None:  # type: ignore[no-untyped-def]
    with TestClient(panel_app) as c:
        login(c, token_for("dora", "dac"))
        page = c.get(f"/panel/requests/{rid}")
        assert page.status_code == 200 and "none sent with the job" in page.text
        with db.begin() as s:
            job = s.get(Job, world.job_id)
            job.code_hash = "c0de" * 16
            image = job.image
        page = c.get(f"/panel/requests/{rid}")
        assert "c0de" * 16 in page.text and f"tre job code {world.job_id} -o code.tar.gz" in page.text
        assert image in page.text


def test_a_small_files_size_is_said_once(panel_app, world, token_for, rid) -> None:  # type: ignore[no-untyped-def]
    """A 43-byte file's card read '43 bytes (43 bytes)' (newcomer round 20): the exact count
    in brackets only where the readable size rounds it. Failed before."""
    small = len(world.outputs["tables/summary.csv"])
    assert small < 1024
    with TestClient(panel_app) as c:
        login(c, token_for("dora", "dac"))
        page = c.get(f"/panel/requests/{rid}").text
    assert f"{small} bytes ({small} bytes)" not in page and f"{small} bytes · sha256" in page
    big = len(world.outputs["dicom/slice.dcm"])  # 8.7 KiB: the exact count stays
    assert big >= 1024 and f"({big} bytes) · sha256" in page
