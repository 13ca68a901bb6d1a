"""The catalogue over HTTP and from the `tre` command: authenticated, role-checked, true media
types, problem documents for every error, audited count queries; the CLI against a live API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rdflib import Graph, Literal, Namespace, URIRef
from sqlalchemy import Engine, select

from tests.catalogue.support import lung_cohort, policy_folder
from tre.api.app import create_app
from tre.audit.note import VerifierKey
from tre.audit.verify import read_bundle, verify_bundle
from tre.catalogue.counts import COUNT_QUERY_ACTION
from tre.config import Settings
from tre.registry import register_dataset
from tre.server import BackgroundServer
from tre.store.db import session_scope
from tre.store.models import AuditEntry

HEALTH = Namespace("http://healthdataportal.eu/ns/health#")
JSONLD = "application/ld+json"
PROBLEM = "application/problem+json"


@pytest.fixture
def lung_node(settings: Settings, engine: Engine, world: Any, tmp_path: Path) -> Any:
    """The core tests' world (ct1: two pydicom sample files) plus dataset lung (12 subjects)."""
    settings.policies_dir = policy_folder(tmp_path / "policies")
    lung = tmp_path / "data" / "lung"
    lung_cohort(lung)
    with session_scope(engine) as s:
        register_dataset(s, "root", "lung", "Lung", lung, policy="default", conditions=["icd10:C34"])
    return world


def test_catalogue_is_json_ld_for_every_role(lung_node: Any, app_client: Any) -> None:
    for user in ("alice", "dana", "audrey", "root"):
        resp = app_client.get("/api/v1/catalogue", headers=lung_node.headers[user])
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith(JSONLD)
    graph = Graph().parse(data=resp.text, format="json-ld")
    lung = URIRef("urn:tre:node:local/dataset/lung")
    assert list(graph.objects(lung, HEALTH.numberOfUniqueIndividuals)) == [
        Literal(10, datatype=URIRef("http://www.w3.org/2001/XMLSchema#nonNegativeInteger"))
    ]
    ct1 = URIRef("urn:tre:node:local/dataset/ct1")  # two files, two subjects: withheld
    assert list(graph.objects(ct1, HEALTH.numberOfUniqueIndividuals)) == []


def test_anonymous_callers_get_a_problem(lung_node: Any, app_client: Any) -> None:
    for method, path in (("GET", "/api/v1/catalogue"), ("POST", "/api/v1/catalogue/counts")):
        resp = app_client.request(method, path, json={})
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith(PROBLEM)


def test_counts_for_researchers_and_admins_only(lung_node: Any, app_client: Any, engine: Engine) -> None:
    body = {"modality": "ct", "body_part": "Chest"}
    resp = app_client.post("/api/v1/catalogue/counts", json=body, headers=lung_node.headers["alice"])
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    by_id = {d["dataset_id"]: d for d in answer["datasets"]}
    assert by_id["lung"]["subjects"] == 10 and not by_id["lung"]["subjects_suppressed"]
    assert by_id["ct1"]["subjects"] is None and by_id["ct1"]["subjects_suppressed"]
    assert answer["query"] == {"modality": "CT", "body_part": "CHEST", "condition": None}
    for user in ("dana", "audrey"):
        refused = app_client.post("/api/v1/catalogue/counts", json=body, headers=lung_node.headers[user])
        assert refused.status_code == 403 and refused.headers["content-type"].startswith(PROBLEM)
    assert app_client.post(
        "/api/v1/catalogue/counts", json=body, headers=lung_node.headers["root"]
    ).is_success
    with session_scope(engine) as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == COUNT_QUERY_ACTION)))
    assert [r.actor for r in rows] == ["alice", "root"]
    assert json.loads(rows[0].body)["details"]["query_id"] == answer["query_id"]


@pytest.mark.parametrize(
    "body",
    [{"modality": "XX"}, {"body_part": "chest;--"}, {"condition": "lung"}, {"sex": "F"}, {"modality": 5}],
)
def test_bad_queries_are_problems(lung_node: Any, app_client: Any, body: dict[str, Any]) -> None:
    resp = app_client.post("/api/v1/catalogue/counts", json=body, headers=lung_node.headers["alice"])
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert resp.json()["detail"]


def test_openapi_names_the_true_media_types(app_client: Any) -> None:
    spec = app_client.get("/openapi.json").json()
    get = spec["paths"]["/api/v1/catalogue"]["get"]["responses"]["200"]["content"]
    assert list(get) == [JSONLD]
    post = spec["paths"]["/api/v1/catalogue/counts"]["post"]
    assert "application/json" in post["responses"]["200"]["content"]
    assert PROBLEM in post["responses"]["403"]["content"]


def tre(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def live(settings: Settings, engine: Engine, lung_node: Any, token_for: Any) -> Iterator[dict[str, str]]:
    with BackgroundServer(create_app(settings, engine)) as server:
        env = {**os.environ, "TRE_HOME": str(settings.home), "TRE_API_URL": server.url}
        env["TRE_TOKEN"] = token_for("alice", "researcher")
        yield env


def test_cli_show_export_count(live: dict[str, str], tmp_path: Path, token_for: Any) -> None:
    shown = tre(live, "catalogue", "show")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in shown.stdout.splitlines()}
    assert rows["id"][:5] == ["id", "title", "access", "subjects", "studies"]
    assert rows["lung"][2:6] == ["NON_PUBLIC", "10", "20", "CT,PT"]
    assert rows["ct1"][3:5] == ["suppressed", "suppressed"]
    as_json = tre(live, "catalogue", "show", "--json")
    assert json.loads(as_json.stdout)["@type"] == "dcat:Catalog"
    out = tmp_path / "new" / "folder" / "catalogue.jsonld"  # its folder is made, as for audit export
    exported = tre(live, "catalogue", "export", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(Graph().parse(out, format="json-ld")) > 20
    counted = tre(live, "catalogue", "count", "--modality", "CT", "--body-part", "CHEST")
    assert counted.returncode == 0, counted.stderr
    lines = {line.split("\t")[0]: line.split("\t") for line in counted.stdout.splitlines()}
    assert lines["lung"][1:3] == ["10", "10"]
    assert lines["ct1"][1:3] == ["suppressed", "suppressed"]
    mr = tre(live, "catalogue", "count", "--modality", "MR", "--json")
    lung = next(d for d in json.loads(mr.stdout)["datasets"] if d["dataset_id"] == "lung")
    assert lung["subjects"] is None and lung["subjects_suppressed"]


def _one_line_error(proc: subprocess.CompletedProcess[str], status: int, word: str) -> None:
    assert proc.returncode == status, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and word in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_errors_are_one_line(live: dict[str, str], token_for: Any, tmp_path: Path) -> None:
    _one_line_error(tre(live, "catalogue", "count", "--modality", "XX"), 2, "--modality")
    _one_line_error(tre(live, "catalogue", "count", "--condition", "lung"), 2, "--condition")
    dac = {**live, "TRE_TOKEN": token_for("dana", "dac")}
    _one_line_error(tre(dac, "catalogue", "count", "--modality", "CT"), 1, "researcher")
    (tmp_path / "a-file").write_text("")
    _one_line_error(
        tre(live, "catalogue", "export", "-o", str(tmp_path / "a-file" / "x.jsonld")), 1, "cannot"
    )


def test_count_queries_are_in_the_exported_log_and_it_verifies(lung_node: Any, app_client: Any) -> None:
    """The auditor's path: export the signed log over the API, verify it offline against the
    pinned key, and find each query with its suppression flags among the verified entries."""
    alice = lung_node.headers["alice"]
    for body in ({"modality": "PT"}, {"modality": "MR"}):
        assert app_client.post("/api/v1/catalogue/counts", json=body, headers=alice).is_success
    auditor = lung_node.headers["audrey"]
    vkey = VerifierKey.parse(app_client.get("/api/v1/audit/public-key", headers=auditor).json()["vkey"])
    bundle = app_client.get("/api/v1/audit/export", headers=auditor)
    report = verify_bundle(bundle.content, vkey)
    assert report.ok, report.errors
    entries = [json.loads(raw) for raw in read_bundle(bundle.content).entries]
    queries = [e["details"] for e in entries if e["action"] == COUNT_QUERY_ACTION]
    flags = [(q["query"]["modality"], q["answers"][-1]["subjects_suppressed"]) for q in queries]
    assert ("PT", False) in flags and ("MR", True) in flags
