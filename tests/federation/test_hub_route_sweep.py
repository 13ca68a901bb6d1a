"""Every route of the hub's app, found by walking ``app.routes`` as the API's sweep does
(`tests/security/test_route_sweep.py`), called with no token, with tokens that must open
nothing (forged, ``alg: none``, another key's, signed out, a user the hub does not know) and
with each role: refused where the table below says, with a problem document, never a 500.

A route added to the hub without an entry here fails `test_every_hub_route_is_classified`.
"""

from __future__ import annotations

import re

import pytest

from tests.federation.test_hub_api import IMAGE
from tests.federation.test_hub_api import hub as hub  # noqa: F401 - the fixture
from tests.security.test_route_sweep import _call, _refused, app_routes, bad_tokens
from tre import registry
from tre.store.db import session_scope

# Callers: alice (researcher, member of fedlung, which owns the job and search used below),
# bob (researcher, no federated project), dana (DAC), audrey (auditor), root (admin).
EVERYONE = frozenset({"alice", "bob", "dana", "audrey", "root"})
NOBODY: frozenset[str] = frozenset()
NOT_SUBMITTERS = frozenset({"dana", "audrey"})
AUDITORS = frozenset({"alice", "bob", "dana"})  # refused the audit reads

PUBLIC = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/static/{name}")}
# A node's agent signs each request with its registered key; a bearer token opens none of them.
NODE_SIGNED = {
    ("POST", "/hub/v1/agent/poll"),
    ("POST", "/hub/v1/agent/children/{child_id}/state"),
    ("PUT", "/hub/v1/agent/children/{child_id}/files/{sha256}"),
    ("PUT", "/hub/v1/agent/children/{child_id}/log"),
    ("POST", "/hub/v1/agent/children/{child_id}/release"),
    ("GET", "/hub/v1/agent/code/{sha256}"),
    ("POST", "/hub/v1/agent/searches/{search_id}/answer"),
}
SIGNS_OUT = {("POST", "/api/v1/auth/logout")}
REFUSED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v1/me"): NOBODY,
    ("POST", "/api/v1/auth/logout"): NOBODY,
    ("POST", "/api/v1/code"): NOT_SUBMITTERS,
    ("GET", "/api/v1/jobs/{job_id}/code"): frozenset({"bob", "dana"}),
    ("GET", "/api/v1/jobs/{job_id}/code/files"): frozenset({"bob", "dana"}),
    ("POST", "/api/v1/jobs"): NOT_SUBMITTERS,
    ("POST", "/api/v1/jobs/check"): NOT_SUBMITTERS | {"bob"},  # bob: no federated project (403)
    ("GET", "/hub/v1/jobs"): NOBODY,
    ("GET", "/hub/v1/jobs/{job_id}"): frozenset({"bob", "dana"}),
    ("GET", "/hub/v1/jobs/{job_id}/results/{node}/{name}"): frozenset({"bob", "dana"}),
    ("GET", "/hub/v1/nodes"): frozenset({"alice", "bob", "dana"}),
    ("POST", "/hub/v1/search"): NOT_SUBMITTERS,
    ("GET", "/hub/v1/search/{search_id}"): frozenset({"bob", "dana"}),
    ("GET", "/api/v1/projects/{project_id}"): frozenset({"bob", "dana"}),
    ("GET", "/api/v1/audit/public-key"): AUDITORS,
    ("GET", "/api/v1/audit/checkpoint"): AUDITORS,
    ("GET", "/api/v1/audit/entries"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/entries/{idx}"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/proof/inclusion"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/proof/consistency"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/export"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/tlog/checkpoint"): AUDITORS,
    ("GET", "/api/v1/audit/tlog/tile/entries/{path:path}"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/tlog/tile/{level}/{path:path}"): AUDITORS,
    ("GET", "/ga4gh/tes/v1/service-info"): NOBODY,
    ("POST", "/ga4gh/tes/v1/tasks"): NOT_SUBMITTERS,
    ("GET", "/ga4gh/tes/v1/tasks"): NOBODY,  # each role lists what it may see
    ("POST", "/ga4gh/tes/v1/tasks/{task_id}:cancel"): NOT_SUBMITTERS | {"bob"},
    ("GET", "/ga4gh/tes/v1/tasks/{task_id}"): frozenset({"bob", "dana"}),
}
ROLES = {"alice": "researcher", "bob": "researcher", "dana": "dac", "audrey": "auditor", "root": "admin"}


@pytest.fixture
def hub_ids(hub, engine_any):  # type: ignore[no-untyped-def]
    """Real ids of fedlung's things: alice's federated job and her search."""
    with session_scope(engine_any) as s:
        registry.create_user(s, "root", "audrey", ["auditor"])
    body = {"project_id": "fedlung", "image": IMAGE, "command": ["python3", "run.py"]}
    job = hub.post("/api/v1/jobs", json=body, headers=hub.tokens["alice"])
    assert job.status_code == 201, job.text
    search = hub.post("/hub/v1/search", json={"modality": "CT"}, headers=hub.tokens["alice"])
    assert search.status_code == 201, search.text
    return {
        "job_id": job.json()["id"],
        "task_id": job.json()["id"],
        "search_id": search.json()["id"],
        "child_id": job.json()["children"][0]["child_id"],
        "node": "node-a",
        "name": "summary.csv",
        "sha256": "0" * 64,
        "project_id": "fedlung",
        "idx": "0",
        "level": "0",
        "path:path": "000",
    }


def _concrete(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: ids[m.group(1)], path)


def test_every_hub_route_is_classified(hub) -> None:  # type: ignore[no-untyped-def]
    found = set(app_routes(hub.hub_app.routes))
    classified = PUBLIC | NODE_SIGNED | set(REFUSED)
    assert found - classified == set(), "hub routes nobody decided who may use"
    assert classified - found == set(), "classified hub routes that no longer exist"


def test_tokens_that_must_open_nothing_open_no_hub_route(hub, hub_ids, settings, token_for) -> None:  # type: ignore[no-untyped-def]
    tokens = {"none": None, **{k: v[0] for k, v in bad_tokens(settings, hub, token_for).items()}}
    for method, path in app_routes(hub.hub_app.routes):
        if (method, path) in PUBLIC:
            continue
        for what, token in tokens.items():
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            resp = _call(hub, method, _concrete(path, hub_ids), headers)
            assert _refused(resp, (401,)), (what, method, path, resp.status_code, resp.text)


def test_each_role_is_refused_where_it_must_be_on_the_hub(hub, hub_ids, token_for) -> None:  # type: ignore[no-untyped-def]
    for method, path in app_routes(hub.hub_app.routes):
        if (method, path) in PUBLIC:
            continue
        for who in sorted(EVERYONE):
            headers = {"Authorization": f"Bearer {token_for(who, ROLES[who])}"}
            resp = _call(hub, method, _concrete(path, hub_ids), headers)
            assert resp.status_code < 500, (who, method, path, resp.text)
            if (method, path) in NODE_SIGNED:  # a token is no node's signature
                assert _refused(resp, (401,)), (who, method, path, resp.status_code, resp.text)
            elif who in REFUSED[(method, path)]:
                ok = (403, 404, 422) if who == "bob" and method == "POST" else (403, 404)
                assert _refused(resp, ok), (who, method, path, resp.status_code, resp.text)
            else:
                assert resp.status_code not in (401, 403), (who, method, path, resp.status_code, resp.text)
