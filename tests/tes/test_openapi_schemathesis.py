"""The TES routes' OpenAPI follows the TES 1.1 schema, and a bounded schemathesis pass over
them (valid and invalid requests, as a researcher and as an admin) finds no server error, no
answer outside the documented schema, no error that is not a problem document, and no task
document that py-tes would refuse."""

from __future__ import annotations

from typing import Any

import pytest
import tes
from tes.utils import unmarshal

from tests.worlds import IMAGE, WorldFactory
from tre.store.db import session_scope

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from tests.fuzzing import error_is_a_problem_document, generate_cases, judge_cases  # noqa: E402

EXAMPLES_PER_OPERATION = 25
PREFIX = "/ga4gh/tes/v1"
# The TES 1.1 schema's fields (tesTask, tesExecutor, tesInput, tesOutput, tesResources).
TES_FIELDS = {
    "TesTask": {
        "id",
        "state",
        "name",
        "description",
        "inputs",
        "outputs",
        "resources",
        "executors",
        "volumes",
        "tags",
        "logs",
        "creation_time",
    },
    "TesExecutor": {"image", "command", "workdir", "stdin", "stdout", "stderr", "env", "ignore_error"},
    "TesInput": {"name", "description", "url", "path", "type", "content", "streamable"},
    "TesOutput": {"name", "description", "url", "path", "path_prefix", "type"},
    "TesResources": {
        "cpu_cores",
        "preemptible",
        "ram_gb",
        "disk_gb",
        "zones",
        "backend_parameters",
        "backend_parameters_strict",
    },
    "TesTaskLog": {"logs", "metadata", "start_time", "end_time", "outputs", "system_logs"},
    "TesExecutorLog": {"start_time", "end_time", "stdout", "stderr", "exit_code"},
    "TesOutputFileLog": {"url", "path", "size_bytes"},
}
STATES = [
    "UNKNOWN",
    "QUEUED",
    "INITIALIZING",
    "RUNNING",
    "PAUSED",
    "COMPLETE",
    "EXECUTOR_ERROR",
    "SYSTEM_ERROR",
    "CANCELED",
    "PREEMPTED",
    "CANCELING",
]


def test_openapi_has_the_tes_routes_and_schema(app_client: Any) -> None:
    doc = app_client.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in doc["paths"].items() if p.startswith(PREFIX) for m in ops}
    assert routes == {
        ("GET", f"{PREFIX}/service-info"),
        ("GET", f"{PREFIX}/tasks"),
        ("POST", f"{PREFIX}/tasks"),
        ("GET", f"{PREFIX}/tasks/{{task_id}}"),
        ("POST", f"{PREFIX}/tasks/{{task_id}}:cancel"),
    }
    schemas = doc["components"]["schemas"]
    for name, fields in TES_FIELDS.items():
        candidates = [s for key, s in schemas.items() if key == name or key.startswith(name + "-")]
        assert candidates, name
        for schema in candidates:
            assert set(schema["properties"]) == fields, name
    assert schemas["TesState"]["enum"] == STATES
    assert set(schemas["TesExecutor"]["required"]) == {"image", "command"}
    # The answered task (every field optional: MINIMAL holds id and state) has the same fields.
    assert set(schemas["TesTaskView"]["properties"]) == TES_FIELDS["TesTask"]
    assert schemas["TesOutputFileLog"]["properties"]["size_bytes"]["type"] == "string"
    params = {p["name"] for p in doc["paths"][f"{PREFIX}/tasks"]["get"]["parameters"]}
    assert {"name_prefix", "state", "tag_key", "tag_value", "page_size", "page_token", "view"} <= params


def tes_checks(operation: Any, case: Any, response: Any) -> str | None:
    """No server error, answers within the schema, errors as problem documents, and task
    documents that py-tes would take."""
    try:
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    except Exception as exc:  # noqa: BLE001 - collect every failure, then report all
        return f"{operation.label}: {type(exc).__name__}: {str(exc)[:300]}"
    if response.status_code >= 400:
        return error_is_a_problem_document(operation, response)
    if operation.method.upper() == "GET" and operation.path.endswith("{task_id}"):
        unmarshal(response.json(), tes.Task)  # py-tes's own strictness
    elif operation.method.upper() == "GET" and operation.path.endswith("/tasks"):
        unmarshal(response.json(), tes.ListTasksResponse)
    return None


ROLES = (("alice", "researcher"), ("root", "admin"))


def test_bounded_schemathesis_pass(
    app: Any, app_client: Any, engine: Any, token_for: Any, dicom_dir: Any
) -> None:
    """The same generated requests sent as each role in turn, into one world: generating them
    is most of a pass's time (tests/fuzzing.py), so they are generated once."""
    with session_scope(engine) as s:
        world = WorldFactory(s, actor="root")
        world.users({"alice": ["researcher"], "root": ["admin"]})
        world.project("lung", "Lung", members=["alice"])
        world.dataset("lidc", dicom_dir)
        world.grant("lung", "lidc")
        world.approve_image("lung")
    alice = {"Authorization": f"Bearer {token_for('alice', 'researcher')}"}
    task = {
        "name": "queued",
        "inputs": [
            {"path": "/code/a.py", "content": "print(1)\n"},
            {"url": "tre://dataset/lidc", "path": "/data"},
        ],
        "outputs": [{"path": "/output/a.txt", "url": "s3://b/a.txt"}],
        "executors": [{"image": IMAGE, "command": ["python3", "a.py"], "env": {"A": "1"}}],
        "tags": {"Project": "lung"},
    }
    created = app_client.post(f"{PREFIX}/tasks", json=task, headers=alice)
    assert created.status_code == 200, created.text
    cases = generate_cases(
        app, examples=EXAMPLES_PER_OPERATION, known_ids={"task_id": created.json()["id"]}, path_prefix=PREFIX
    )
    problems = [
        f"{role}: {problem}"
        for user, role in ROLES
        for problem in judge_cases(cases, {"Authorization": f"Bearer {token_for(user, role)}"}, tes_checks)
    ]
    assert not problems, "\n".join(sorted(set(problems))[:40])
