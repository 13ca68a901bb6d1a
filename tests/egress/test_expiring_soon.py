"""Round 13: requests about to expire are said before they expire.

Every open request's view and summary carry ``expires_at`` (TRE_EGRESS_OPEN_TTL_DAYS after it
was made); ``GET /requests?expiring_within_days=N`` and ``tre egress list --expiring N`` list
the open ones that expire within N days, soonest first; the panel's queue marks those within
TRE_EGRESS_EXPIRY_WARN_DAYS, counts them in its heading and lists them under a tab. The panel's
queue is also filtered by dataset and age, sorted, paged, and shows a reviewer's own votes.
Real app and store, real CLI against uvicorn.
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from egress_review.panel import routes as panel_routes
from tests.egress.test_committees import BASE, OUTPUTS, age, build_two
from tests.egress.test_workflow_support import LiveServer, with_egress_routes
from tre.cli.egress import app as egress_cli
from tre.config import reset_settings_cache


@pytest.fixture
def world(esettings, app, db, token_for):  # type: ignore[no-untyped-def]
    """Four open requests by alice: over lidc-subset aged 28.5 and 20 days, over ct2 aged 29
    days, and a fresh one over lidc-subset; and one withdrawn (final: no expiry)."""
    with db.begin() as s:
        two = build_two(s, esettings)
    alice = {"Authorization": f"Bearer {token_for(two.world.researcher, 'researcher')}"}
    app = with_egress_routes(app)
    ids = {}
    with TestClient(app) as c:
        for name, job in (("a28", two.job_a), ("a20", two.job_a), ("b29", two.job_b), ("new", two.job_a)):
            got = c.post(
                BASE, headers=alice, json={"job_id": job, "files": list(OUTPUTS), "justification": name}
            )
            assert got.status_code == 201, got.text
            ids[name] = got.json()["id"]
        gone = c.post(
            BASE, headers=alice, json={"job_id": two.job_a, "files": list(OUTPUTS), "justification": "x"}
        )
        ids["gone"] = gone.json()["id"]
        c.post(f"{BASE}/{ids['gone']}/withdrawal", headers=alice, json={"reason": "typo"}).raise_for_status()
    age(db, ids["a28"], 28.5)
    age(db, ids["a20"], 20)
    age(db, ids["b29"], 29)
    return two, ids, app


def test_the_api_lists_what_expires_soon_soonest_first(world, esettings, token_for) -> None:  # type: ignore[no-untyped-def]
    two, ids, app = world
    admin = {"Authorization": f"Bearer {token_for(two.world.admin, 'admin')}"}
    dana = {"Authorization": f"Bearer {token_for('dana', 'dac')}"}
    with TestClient(app) as c:
        soon = c.get(BASE, headers=admin, params={"expiring_within_days": 2}).json()
        assert [r["id"] for r in soon] == [ids["b29"], ids["a28"]]  # soonest first
        wider = c.get(BASE, headers=admin, params={"expiring_within_days": 11}).json()
        assert [r["id"] for r in wider] == [ids["b29"], ids["a28"], ids["a20"]]
        # Deny by default still holds: dana reviews lidc-subset only.
        assert [r["id"] for r in c.get(BASE, headers=dana, params={"expiring_within_days": 2}).json()] == [
            ids["a28"]
        ]
        view = c.get(f"{BASE}/{ids['a28']}", headers=dana).json()
        left = datetime.fromisoformat(view["expires_at"]) - datetime.fromisoformat(view["created_at"])
        assert round(left.total_seconds() / 86400, 3) == 30  # TRE_EGRESS_OPEN_TTL_DAYS
        assert c.get(f"{BASE}/{ids['gone']}", headers=admin).json()["expires_at"] is None
        listed = {r["id"]: r for r in c.get(BASE, headers=admin).json()}
        assert listed[ids["new"]]["expires_at"] and listed[ids["gone"]]["expires_at"] is None
        assert (
            c.get(BASE, headers=admin, params={"expiring_within_days": 40, "state": "withdrawn"}).json() == []
        )
        bad = c.get(BASE, headers=admin, params={"expiring_within_days": -1})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    esettings.egress_open_ttl_days = 0  # requests never expire: none is about to
    with TestClient(app) as c:
        assert c.get(BASE, headers=admin, params={"expiring_within_days": 40}).json() == []
        assert c.get(f"{BASE}/{ids['a28']}", headers=admin).json()["expires_at"] is None


def test_the_cli_lists_and_shows_when_requests_expire(world, token_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    two, ids, app = world
    with LiveServer(app) as live:
        monkeypatch.setenv("TRE_API_URL", live.url)
        monkeypatch.setenv("TRE_TOKEN", token_for("dana", "dac"))
        reset_settings_cache()
        runner = CliRunner()
        listed = runner.invoke(egress_cli, ["list", "--expiring", "2"])
        assert listed.exit_code == 0, listed.output
        assert ids["a28"][:8] in listed.output and ids["a20"][:8] not in listed.output
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", listed.output)
        shown = runner.invoke(egress_cli, ["show", ids["a28"]])
        assert shown.exit_code == 0 and "expires: " in shown.output and "unless decided first" in shown.output
        bad = runner.invoke(egress_cli, ["list", "--expiring", "-1"])
        assert bad.exit_code != 0


def test_the_panel_queue_marks_counts_and_lists_what_expires_soon(world, token_for) -> None:  # type: ignore[no-untyped-def]
    two, ids, app = world
    with TestClient(app) as c:
        c.cookies.set("tre_panel_token", token_for(two.world.admin, "admin"), path="/panel")
        page = c.get("/panel/").text
        assert re.search(r'id="expiring-count">.*2 open requests expire within 3 days', page)
        row = page[page.index(f'data-id="{ids["a28"]}"') :]
        row = row[: row.index("</tr>")]
        assert re.search(r"expires in 3[56] h", row), row  # 28.5 days of 30 gone
        fresh = page[page.index(f'data-id="{ids["new"]}"') :]
        fresh = fresh[: fresh.index("</tr>")]
        assert "expires in" not in fresh and "UTC" in fresh  # a date, not a warning
        tab = c.get("/panel/", params={"show": "expiring"}).text
        assert ids["b29"][:12] in tab and ids["a28"][:12] in tab and ids["a20"][:12] not in tab
        # Filters: dataset and age, and a hand-edited value gives the plain queue, not an error.
        ct2 = c.get("/panel/", params={"dataset": "ct2"}).text
        assert ids["b29"][:12] in ct2 and ids["a28"][:12] not in ct2
        older = c.get("/panel/", params={"older_than": "25"}).text
        assert ids["a28"][:12] in older and ids["a20"][:12] not in older and ids["new"][:12] not in older
        odd = c.get("/panel/", params={"older_than": "x", "page": "-3", "sort": "sideways", "dataset": "<b>"})
        assert odd.status_code == 200 and "<b>" not in odd.text


def test_the_panel_queue_pages_sorts_and_shows_my_votes(world, token_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    two, ids, app = world
    monkeypatch.setattr(panel_routes, "QUEUE_PAGE", 2)
    with TestClient(app) as c:
        c.cookies.set("tre_panel_token", token_for(two.world.admin, "admin"), path="/panel")
        first = c.get("/panel/").text
        order = re.findall(r'<tr data-id="([0-9a-f]{32})"', first)
        assert order == [ids["b29"], ids["a28"]]  # oldest first, two a page
        assert "1–2 of 4" in first and 'rel="next"' in first and 'rel="prev"' not in first
        second = c.get("/panel/", params={"page": 2}).text
        assert re.findall(r'<tr data-id="([0-9a-f]{32})"', second) == [ids["a20"], ids["new"]]
        newest = c.get("/panel/", params={"sort": "newest"}).text
        assert re.findall(r'<tr data-id="([0-9a-f]{32})"', newest)[0] == ids["new"]
        assert "sort=newest" in newest  # the pages keep the choices
    with TestClient(app) as c:
        c.cookies.set("tre_panel_token", token_for("dana", "dac"), path="/panel")
        csrf = c.get("/panel/").text
        token = re.search(r'name="csrf" value="([^"]+)"', csrf)
        assert token is not None
        voted = c.post(
            f"/panel/requests/{ids['a20']}/vote",
            data={"vote": "approve", "comment": "fine", "csrf": token.group(1)},
            follow_redirects=False,
        )
        assert voted.status_code == 303, voted.text
        mine = c.get("/panel/", params={"show": "mine"}).text
        assert re.findall(r'<tr data-id="([0-9a-f]{32})"', mine) == [ids["a20"]]
        assert "your vote: approve" in mine and "review: approve" not in mine
