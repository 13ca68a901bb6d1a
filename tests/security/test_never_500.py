"""Bad input is answered with a 4xx problem document, never a 500 (issue 17, item 13).

Each case below was a 500 (or a bare text/plain answer) found by schemathesis: numbers beyond
64 bits or beyond what date arithmetic and JSON can hold, NUL bytes, a dataset path the
server may not look into, an oversized Authorization header, an empty command.
"""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select

from tests.worlds import job_body
from tre.api.app import create_app
from tre.errors import AdmissionDenied
from tre.jobs.admission import MAX_COMMAND_ARG_CHARS, check_command
from tre.server import BackgroundServer
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job


def problem(resp: httpx.Response, *statuses: int) -> dict:  # type: ignore[type-arg]
    assert resp.status_code in statuses, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == resp.status_code and body["detail"]
    return body  # type: ignore[no-any-return]


def _raw_json(client, method: str, url: str, headers: dict[str, str], text: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return client.request(method, url, headers={**headers, "content-type": "application/json"}, content=text)


def test_dataset_paths_the_server_cannot_use(app_client, world) -> None:  # type: ignore[no-untyped-def]
    root = world.headers["root"]
    for path in ("/srv/data\x00/x", "/proc/1/root", "/proc/self/root/etc", "/nonexistent/\udcff"):
        body = json.dumps({"id": "bad", "path": path}, ensure_ascii=True)
        problem(_raw_json(app_client, "POST", "/api/v1/datasets", root, body), 400, 422)


def test_integers_beyond_64_bits(app_client, world) -> None:  # type: ignore[no-untyped-def]
    audrey, alice = world.headers["audrey"], world.headers["alice"]
    for url in (
        f"/api/v1/audit/entries?after={1 << 64}",
        f"/api/v1/audit/entries/{1 << 64}",
        f"/api/v1/audit/entries/{(1 << 63) - 1}",
        f"/api/v1/audit/proof/inclusion?index={1 << 70}&tree_size=1",
        f"/api/v1/audit/proof/consistency?first=0&second={1 << 64}",
        f"/api/v1/audit/export?tree_size={1 << 64}",
    ):
        problem(app_client.get(url, headers=audrey), 404, 422)
    job = app_client.post("/api/v1/jobs", headers=alice, json=job_body()).json()["id"]
    problem(app_client.get(f"/api/v1/jobs/{job}/logs?offset=9223372036854775807", headers=alice), 422)
    # An offset past the end of the log (within the bound) is simply nothing to show.
    far = app_client.get(f"/api/v1/jobs/{job}/logs?offset={1 << 40}", headers=alice)
    assert far.status_code == 200 and far.content == b""
    problem(app_client.get(f"/api/v1/egress/requests/x/files/{1 << 64}", headers=alice), 404, 422)


def test_dates_and_floats_out_of_range(app_client, world) -> None:  # type: ignore[no-untyped-def]
    root = world.headers["root"]
    grant = {"project_id": "p2", "dataset_id": "ct1"}
    problem(app_client.post("/api/v1/grants", headers=root, json={**grant, "days": 100_000_000}), 422)
    for when in ("9999-12-31T23:59:59-14:00", "9999-12-31T00:00:00Z"):
        problem(app_client.post("/api/v1/grants", headers=root, json={**grant, "expires_at": when}), 422)
    # A time without a zone is taken as UTC instead of failing the comparison with now.
    ok = app_client.post("/api/v1/grants", headers=root, json={**grant, "expires_at": "2099-01-01T00:00:00"})
    assert ok.status_code == 201, ok.text
    for value in ("1e20", "Infinity", "-Infinity", "NaN", "1e400"):
        text = f'{{"id": "q", "quota": {{"max_cpu": {value}}}}}'
        problem(_raw_json(app_client, "POST", "/api/v1/projects", root, text), 422)
        text = f'{{"id": "q", "quota": {{"max_memory_mb": {value}}}}}'
        problem(_raw_json(app_client, "POST", "/api/v1/projects", root, text), 422)
    job = json.dumps(job_body()).replace('"cpu": 1', '"cpu": NaN')
    problem(_raw_json(app_client, "POST", "/api/v1/jobs", world.headers["alice"], job), 422)


def test_text_the_store_cannot_hold(app_client, world) -> None:  # type: ignore[no-untyped-def]
    root = world.headers["root"]
    problem(app_client.get("/api/v1/jobs/a%00b", headers=root), 400)
    problem(app_client.get("/api/v1/jobs?project_id=%00", headers=root), 400)
    body = json.dumps({"id": "x", "roles": ["researcher"], "display_name": "\ud800"})
    problem(_raw_json(app_client, "POST", "/api/v1/admin/users", root, body), 422)
    problem(app_client.post("/api/v1/projects", headers=root, json={"id": "p3", "name": "a\x00b"}), 422)


@pytest.mark.parametrize(
    "command",
    [[], [""], ["   "], [" python3"], ["python3", "-c", "x\x00"], ["x" * (MAX_COMMAND_ARG_CHARS + 1)]],
)
def test_invalid_commands_are_refused_at_admission(app_client, world, engine, command) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AdmissionDenied):
        check_command(command)
    resp = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body(command=command))
    problem(resp, 403, 422)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_whoami_is_not_a_sign_in_each_time(app_client, world, engine, token_for) -> None:  # type: ignore[no-untyped-def]
    def logins() -> int:
        with session_scope(engine) as s:
            return int(
                s.scalar(
                    select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "auth.login")
                )
                or 0
            )

    before = logins()
    for _ in range(5):
        assert app_client.get("/api/v1/me", headers=world.headers["alice"]).status_code == 200
    assert logins() == before + 1
    fresh = {"Authorization": f"Bearer {token_for('alice', 'researcher')}"}
    assert app_client.get("/api/v1/me", headers=fresh).status_code == 200
    assert logins() == before + 2


def test_oversized_authorization_header_gets_a_problem(settings, engine) -> None:  # type: ignore[no-untyped-def]
    """Through a real uvicorn server: the HTTP parser itself must not answer first."""
    with BackgroundServer(create_app(settings, engine)) as server:
        for size, status in ((20 * 1024, 401), (130 * 1024, 431), (600 * 1024, 431)):
            resp = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": "Bearer " + "a" * size})
            problem(resp, status)
        # The server still answers normally afterwards.
        problem(httpx.get(f"{server.url}/api/v1/me"), 401)
