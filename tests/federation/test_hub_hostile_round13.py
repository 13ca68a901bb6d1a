"""A hostile node and a hostile researcher at the hub (round 13).

Failing before this round: a task's own tags could claim the hub's in another case
(`TRE.Node.node-a`: beside the hub's `tre.node.node-a`, a node state no node reported; the
lowercase prefix was refused already, `tre.tes.submission`), and `tre hub job show` /
`tre hub jobs` / `tre hub search` printed the hub's fields through Rich markup, so a field
holding ``[link=…]`` or an escape restyled or rewrote the researcher's terminal. Held
already, kept by these tests: huge and malformed agent bodies are problem documents (never
a 500, nothing stored), a member cancelling another member's task is refused and nothing is
cancelled, a forged or foreign page token widens no listing.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from tests.federation.hubkit import signed
from tests.federation.test_hub_api import IMAGE, _submit, hub  # noqa: F401 - `hub` is a fixture
from tre import registry
from tre.federation.wire import child_id
from tre.store.db import session_scope
from tre.store.federation_models import FedChild, FedJob

OSC52 = "\x1b]52;c;ZXZpbA==\x07"
TASK = {"executors": [{"image": IMAGE, "command": ["true"]}], "tags": {"Project": "fedlung"}}


def test_a_task_cannot_carry_the_hubs_own_tags(hub) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    for key in ("tre.node.node-z", "tre.federation.state", "TRE.Node.node-a"):
        body = {**TASK, "tags": {"Project": "fedlung", key: "released"}}
        resp = hub.post("/ga4gh/tes/v1/tasks", json=body, headers=hub.tokens["alice"])
        assert resp.status_code == 400, (key, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    # Markup in a name, a description or a tag is data: stored and answered as JSON text.
    marked = {**TASK, "name": "<script>x</script>[red]n[/]", "description": f"d{OSC52}"}
    marked["tags"] = {"Project": "fedlung", "note": "<b>[link=http://evil]x[/link]</b>"}
    made = hub.post("/ga4gh/tes/v1/tasks", json=marked, headers=hub.tokens["alice"])
    assert made.status_code == 200, made.text
    shown = hub.get(f"/ga4gh/tes/v1/tasks/{made.json()['id']}?view=BASIC", headers=hub.tokens["alice"])
    assert shown.headers["content-type"].startswith("application/json")
    assert shown.json()["name"] == marked["name"] and shown.json()["tags"]["note"] == marked["tags"]["note"]


def test_huge_and_malformed_agent_bodies_are_problems_and_store_nothing(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    job = _submit(hub).json()
    a = hub.nodes["a"]
    cid = child_id(job["id"], "node-a")
    state = f"/hub/v1/agent/children/{cid}/state"
    deep = b'{"state": "queued", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bodies = [
        b"{" + b" " * (2 << 20) + b"}",  # over the hub's 1 MiB body limit
        b'{"state": "queued"',  # cut short
        b'["queued"]',  # not an object
        b'{"state": "queued", "reason": "\\u0000"}',
        deep,  # nesting far past any parser's depth
        '{"state": "quéued"}'.encode("latin-1"),  # not UTF-8
    ]
    for raw in bodies:
        resp = signed(hub, a, "POST", state, raw=raw)
        assert resp.status_code in (413, 422), (raw[:40], resp.status_code, resp.text[:200])
        assert resp.headers["content-type"].startswith("application/problem+json")
    release = f"/hub/v1/agent/children/{cid}/release"
    nested = '{"n": ' * 5000 + '{"released": true}' + "}" * 5000
    too_deep = ('{"files": [], "checkpoint": "x", "disclosure_record": ' + nested + "}").encode()
    resp = signed(hub, a, "POST", release, raw=too_deep)
    assert resp.status_code in (413, 422), resp.text[:200]
    with session_scope(engine_any) as s:
        child = s.get(FedChild, cid)
        assert child is not None and child.state == "pending" and child.disclosure_record is None


def test_a_member_cannot_cancel_anothers_task(hub, engine_any, token_for) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with session_scope(engine_any) as s:
        registry.create_user(s, "root", "carol", ["researcher"])
        registry.add_member(s, "root", "fedlung", "carol")
    carol = {"Authorization": f"Bearer {token_for('carol', 'researcher')}"}
    made = hub.post("/ga4gh/tes/v1/tasks", json=TASK, headers=hub.tokens["alice"])
    task_id = made.json()["id"]
    resp = hub.post(f"/ga4gh/tes/v1/tasks/{task_id}:cancel", headers=carol)
    assert resp.status_code == 403, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    with session_scope(engine_any) as s:
        job = s.get(FedJob, task_id)
        assert job is not None and job.cancel_requested_at is None
    # She still sees it (a member), and its state is not CANCELING.
    got = hub.get(f"/ga4gh/tes/v1/tasks/{task_id}", headers=carol).json()
    assert got == {"id": task_id, "state": "RUNNING"}


def _token(created: datetime, last_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{last_id}".encode()).decode().rstrip("=")


def test_page_tokens_never_widen_a_listing(hub) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ids = [
        hub.post("/ga4gh/tes/v1/tasks", json=TASK, headers=hub.tokens["alice"]).json()["id"] for _ in range(3)
    ]
    future = datetime.now(UTC) + timedelta(days=3650)
    tricks = [
        _token(future, "f" * 32),  # from the far future: every task after it
        _token(future, ""),
        _token(datetime(1970, 1, 1, tzinfo=UTC), "0" * 32),  # before everything
    ]
    for token in tricks:
        for who in ("bob", "dana"):  # bob: no federated project; dana: a reviewer
            resp = hub.get("/ga4gh/tes/v1/tasks", params={"page_token": token}, headers=hub.tokens[who])
            assert resp.status_code == 200 and resp.json() == {"tasks": []}, (who, resp.text)
    mine = hub.get("/ga4gh/tes/v1/tasks", params={"page_token": tricks[0]}, headers=hub.tokens["alice"])
    assert sorted(t["id"] for t in mine.json()["tasks"]) == sorted(ids)
    for bad in (
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00|x").decode(),  # no time zone
        _token(future, "f" * 33),  # an id longer than any
        "%00",
        "=" * 8,
    ):
        resp = hub.get("/ga4gh/tes/v1/tasks", params={"page_token": bad}, headers=hub.tokens["alice"])
        assert resp.status_code in (400, 422), (bad, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    for params in ({"page_size": 0}, {"page_size": -1}, {"page_size": "1e9"}):
        resp = hub.get("/ga4gh/tes/v1/tasks", params=params, headers=hub.tokens["alice"])
        assert resp.status_code in (400, 422), (params, resp.text)


def test_the_hub_cli_prints_the_hubs_fields_as_text(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.security.test_cli_terminal import FakeClient
    from tre.cli import federation as fed_cli
    from tre.cli.app import app

    evil = f"[link=http://evil]running[/link]{OSC52}\r[green]ok"
    job = {
        "id": "a" * 32,
        "project_id": "fedlung[/]",
        "state": evil,
        "created_at": "2026-12-01T00:00:00",
        "children": [
            {
                "node": f"node-a{OSC52}",
                "node_status": "online\n[bold]",
                "state": evil,
                "reason": "[red]dac_rejected",
                "files": [{"name": "f[/].csv", "sha256": "b" * 64}],
            }
        ],
    }
    monkeypatch.setattr(fed_cli, "ApiClient", lambda: FakeClient(job))
    monkeypatch.setattr(fed_cli, "resolve_hub_job_id", lambda client, job_id: job_id)
    shown = CliRunner().invoke(app, ["hub", "job", "show", "a" * 32])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\r" not in shown.output
    assert "[link=http://evil]running[/link]" in shown.output and "[red]dac_rejected" in shown.output
    assert shown.output.count("\n") == 2  # the header and one node: no line break let through
    monkeypatch.setattr(fed_cli, "ApiClient", lambda: FakeClient([job]))
    listed = CliRunner().invoke(app, ["hub", "jobs"])
    assert listed.exit_code == 0 and "\x1b" not in listed.output and "fedlung[/]" in listed.output
