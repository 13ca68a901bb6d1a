"""Completeness: every API route that changes state writes an audit entry naming who acted
and on what.

The routes are enumerated from the app itself (a new mutating route fails the first test
until it is listed here). Each one is called for real, as the role that may use it, with a
body that succeeds; the entries appended by that call must include one whose actor is the
caller and whose hashed body names every object the call touched (read from the signed
entries, never from the search columns). Routes whose success needs a real container image
or the panel's browser session are proven by the named tests, which this file checks exist.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from tests.security.test_route_sweep import app_routes
from tests.worlds import IMAGE, WorldFactory
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditEntry

EXTERNAL = "registry.example.org/tools@sha256:" + "cd" * 32
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
REPO = Path(__file__).resolve().parents[2]

# Mutating routes whose successful call is shown to write its entry by another test (real
# images in a registry, the panel's cookie session): "file::test" names it.
ELSEWHERE = {
    ("POST", "/api/v1/images"): "tests/images/test_cli_api.py::test_import_approve_list_and_admit",
    ("POST", "/api/v1/images/push"): "tests/images/test_push.py::test_push_through_the_api_and_on_approval",
    (
        "DELETE",
        "/api/v1/images/{digest}",
    ): "tests/images/test_remove.py::test_who_may_remove_what_and_what_is_freed",
    (
        "POST",
        "/panel/login",
    ): "tests/oidc/test_panel_sign_in.py::test_dac_member_signs_in_with_pkce_and_lands_on_the_queue",
    ("POST", "/panel/logout"): "tests/security/test_token_revocation.py",
    ("POST", "/panel/requests/{request_id}/vote"): "tests/egress/test_api_panel.py",
    ("POST", "/panel/requests/{request_id}/resolve"): "tests/egress/test_api_panel.py",
}


def _code_archive() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"print('hi')\n"
        info = tarfile.TarInfo("run.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


# (method, path, caller, request kwargs, objects the entry must name); ids in {} come from
# earlier answers (`made`) or the fixture's world.
Step = tuple[str, str, str, dict[str, Any], list[str]]


def steps(world_dir: Path) -> list[Step]:
    return [
        ("POST", "/api/v1/admin/users", "root", {"json": {"id": "carl", "roles": ["researcher"]}}, ["carl"]),
        (
            "PUT",
            "/api/v1/admin/users/carl/roles",
            "root",
            {"json": {"roles": ["researcher", "dac"]}},
            ["carl"],
        ),
        ("POST", "/api/v1/admin/users/carl/disable", "root", {}, ["carl"]),
        ("POST", "/api/v1/admin/users/carl/enable", "root", {}, ["carl"]),
        ("POST", "/api/v1/projects", "root", {"json": {"id": "p3", "name": "three"}}, ["p3"]),
        ("PATCH", "/api/v1/projects/p3/quota", "root", {"json": {"max_cpu": 1}}, ["p3"]),
        ("POST", "/api/v1/projects/p3/members", "root", {"json": {"user_id": "carl"}}, ["p3", "carl"]),
        ("DELETE", "/api/v1/projects/p3/members/carl", "root", {}, ["p3", "carl"]),
        ("POST", "/api/v1/datasets", "root", {"json": {"id": "ct9", "path": str(world_dir)}}, ["ct9"]),
        (
            "POST",
            "/api/v1/grants",
            "root",
            {"json": {"project_id": "p3", "dataset_id": "ct9", "days": 1}},
            ["p3", "ct9"],
        ),
        ("POST", "/api/v1/grants/{grant_id}/revoke", "root", {"json": {}}, ["{grant_id}"]),
        # Committees (tre.committees): carl (given dac above) reviews ct1's requests below; a
        # seat on ct9 taken back again (forced: ct9's committee cannot meet its quorum then).
        (
            "POST",
            "/api/v1/admin/committees/ct1/members",
            "root",
            {"json": {"user_id": "carl"}},
            ["ct1", "carl"],
        ),
        (
            "POST",
            "/api/v1/admin/committees/ct9/members",
            "root",
            {"json": {"user_id": "dana"}},
            ["ct9", "dana"],
        ),
        (
            "DELETE",
            "/api/v1/admin/committees/ct9/members/dana",
            "root",
            {"params": {"force": "true"}},
            ["ct9", "dana"],
        ),
        ("POST", "/api/v1/catalogue/counts", "alice", {"json": {"modality": "ct"}}, []),
        (
            "POST",
            "/api/v1/code",
            "alice",
            {
                "params": {"project_id": "p1"},
                "content": _code_archive(),
                "headers": {"Content-Type": "application/gzip"},
            },
            ["p1"],
        ),
        (
            "POST",
            "/api/v1/jobs/check",
            "alice",
            {"json": {"project_id": "p1", "image": IMAGE, "command": ["true"], "dataset_ids": ["ct1"]}},
            ["p1", "job.checked"],
        ),
        (
            "POST",
            "/api/v1/jobs",
            "alice",
            {"json": {"project_id": "p1", "image": IMAGE, "command": ["true"], "dataset_ids": ["ct1"]}},
            ["p1", "{job_id}"],
        ),
        ("POST", "/api/v1/jobs/{job_id}/cancel", "alice", {}, ["{job_id}"]),
        (
            "POST",
            "/ga4gh/tes/v1/tasks",
            "alice",
            {
                "json": {
                    "inputs": [{"path": "/code/a.py", "content": "print('hi')\n"}],
                    "executors": [{"image": IMAGE, "command": ["python3", "a.py"]}],
                    "tags": {"Project": "p1"},
                }
            },
            ["p1", "{task_id}"],
        ),
        ("POST", "/ga4gh/tes/v1/tasks/{task_id}:cancel", "alice", {}, ["{task_id}"]),
        (
            "POST",
            "/api/v1/egress/requests",
            "alice",
            {"json": {"job_id": "{done_job}", "files": ["summary.csv"], "justification": "counts"}},
            ["{done_job}"],
        ),
        (
            "POST",
            "/api/v1/egress/requests/{request_id}/withdrawal",
            "alice",
            {"json": {}},
            ["{request_id}"],
        ),
        # a second request (the first is withdrawn, final) for the votes and the resolution
        (
            "POST",
            "/api/v1/egress/requests",
            "alice",
            {"json": {"job_id": "{done_job}", "files": ["summary.csv"], "justification": "counts"}},
            ["{done_job}"],
        ),
        (
            "POST",
            "/api/v1/egress/requests/{request_id}/votes",
            "dana",
            {"json": {"vote": "approve"}},
            ["{request_id}"],
        ),
        (
            "POST",
            "/api/v1/egress/requests/{request_id}/votes",
            "carl",
            {"json": {"vote": "reject"}},
            ["{request_id}"],
        ),
        (
            "POST",
            "/api/v1/egress/requests/{request_id}/resolution",
            "root",
            {"json": {"decision": "reject", "comment": "ok"}},
            ["{request_id}"],
        ),
        (
            "POST",
            "/api/v1/images/approvals",
            "root",
            {"json": {"reference": EXTERNAL, "project_id": "p2", "external": True}},
            ["p2", EXTERNAL],
        ),
        (
            "POST",
            "/api/v1/images/approvals/revoke",
            "root",
            {"json": {"reference": EXTERNAL, "project_id": "p2"}},
            ["p2", EXTERNAL],
        ),
        ("POST", "/api/v1/auth/logout", "bob", {}, []),
    ]


def _fill(value: Any, made: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\{([a-z_]+)\}", lambda m: made[m.group(1)], value)
    if isinstance(value, dict):
        return {k: _fill(v, made) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, made) for v in value]
    return value


def _template(path: str) -> str:
    return {
        "/api/v1/admin/users/carl/roles": "/api/v1/admin/users/{user_id}/roles",
        "/api/v1/admin/users/carl/disable": "/api/v1/admin/users/{user_id}/disable",
        "/api/v1/admin/users/carl/enable": "/api/v1/admin/users/{user_id}/enable",
        "/api/v1/projects/p3/quota": "/api/v1/projects/{project_id}/quota",
        "/api/v1/projects/p3/members": "/api/v1/projects/{project_id}/members",
        "/api/v1/projects/p3/members/carl": "/api/v1/projects/{project_id}/members/{user_id}",
        "/api/v1/admin/committees/ct1/members": "/api/v1/admin/committees/{dataset_id}/members",
        "/api/v1/admin/committees/ct9/members": "/api/v1/admin/committees/{dataset_id}/members",
        "/api/v1/admin/committees/ct9/members/dana": (
            "/api/v1/admin/committees/{dataset_id}/members/{user_id}"
        ),
    }.get(path, path)


def _bodies_after(engine: Engine, after: int) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        return [json.loads(b) for b in s.scalars(select(AuditEntry.body).where(AuditEntry.idx > after))]


def _size(engine: Engine) -> int:
    with session_scope(engine) as s:
        return int(s.scalar(select(func.max(AuditEntry.idx))) or -1)


def test_every_mutating_route_is_exercised_or_proven_elsewhere(app, dicom_dir: Path) -> None:  # type: ignore[no-untyped-def]
    found = {(m, p) for m, p in app_routes(app.routes) if m in MUTATING}
    here = {(m, _template(p)) for m, p, *_ in steps(dicom_dir)}
    assert found - here - set(ELSEWHERE) == set(), "mutating routes nobody shows are audited"
    assert (here | set(ELSEWHERE)) - found == set(), "listed routes that no longer exist"
    for where in ELSEWHERE.values():
        file, _, test = where.partition("::")
        source = (REPO / file).read_text()
        assert not test or f"def {test}(" in source, where


def test_each_state_change_writes_an_entry_with_actor_and_objects(  # type: ignore[no-untyped-def]
    app_client,
    world,
    engine: Engine,
    settings: Settings,
    token_for,
) -> None:
    callers = dict(world.headers)
    with session_scope(engine) as s:
        done = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], {"summary.csv": b"n\n200\n"})
    made: dict[str, str] = {"done_job": done}
    for method, path, who, kwargs, objects in steps(world.data_dir):
        before = _size(engine)
        kw = _fill(kwargs, made)
        headers = {**callers[who], **kw.pop("headers", {})}
        resp = app_client.request(method, _fill(path, made), headers=headers, **kw)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text[:300])
        answer = resp.json() if resp.content and resp.headers.get("content-type", "").endswith("json") else {}
        if path == "/api/v1/grants":
            made["grant_id"] = answer["id"]
        elif path == "/api/v1/jobs":
            made["job_id"] = answer["id"]
        elif path == "/ga4gh/tes/v1/tasks":
            made["task_id"] = answer["id"]
        elif path == "/api/v1/egress/requests":
            made["request_id"] = answer["id"]
        elif path == "/api/v1/admin/users/carl/enable":
            # Enabled again, carl signs in again: tokens from before the enable are refused
            # (round 17, `tre.auth.generation`).
            callers["carl"] = {"Authorization": f"Bearer {token_for('carl', 'researcher', 'dac')}"}
        wanted = [_fill(o, made) for o in objects]
        entries = [
            e
            for e in _bodies_after(engine, before)
            if e["actor"] == who and e["action"] not in ("auth.token_used", "auth.refused")
        ]
        assert any(all(w in json.dumps(e) for w in wanted) for e in entries), (method, path, wanted, entries)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def test_the_panel_sign_in_vote_and_sign_out_are_entries(  # type: ignore[no-untyped-def]
    app_client, world, engine: Engine, settings: Settings
) -> None:
    """The review panel's routes, with its cookie session. Its embedded-mode sign-in (a DAC
    member pastes a token) wrote no entry at all (the OIDC sign-in writes `auth.login`): now
    every sign-in is one, not only the token's first use in the hour."""
    token = world.headers["dana"]["Authorization"].removeprefix("Bearer ")
    for _ in range(2):
        app_client.cookies.clear()
        csrf = _csrf(app_client.get("/panel/login").text)
        before = _size(engine)
        resp = app_client.post("/panel/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
        assert resp.status_code == 303, resp.text[:300]
        logins = [
            e for e in _bodies_after(engine, before) if e["action"] == "auth.login" and e["actor"] == "dana"
        ]
        assert len(logins) == 1, _bodies_after(engine, before)
        assert logins[0]["details"].get("via") == "panel-token" and logins[0]["details"].get("token_id")

    with session_scope(engine) as s:
        done = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], {"summary.csv": b"n\n200\n"})
    body = {"job_id": done, "files": ["summary.csv"], "justification": "counts"}
    made = app_client.post("/api/v1/egress/requests", headers=world.headers["alice"], json=body)
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    csrf = _csrf(app_client.get(f"/panel/requests/{rid}").text)
    before = _size(engine)
    voted = app_client.post(
        f"/panel/requests/{rid}/vote", data={"vote": "approve", "csrf": csrf}, follow_redirects=False
    )
    assert voted.status_code == 303, voted.text[:300]
    assert any(
        e["action"] == "egress.vote" and e["actor"] == "dana" and rid in json.dumps(e)
        for e in _bodies_after(engine, before)
    ), _bodies_after(engine, before)
    before = _size(engine)
    out = app_client.post("/panel/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code in (200, 303), out.text[:300]
    assert any(e["action"] == "auth.logout" and e["actor"] == "dana" for e in _bodies_after(engine, before))
