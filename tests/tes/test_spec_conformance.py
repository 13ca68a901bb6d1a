"""TES 1.1 conformance against the published GA4GH schema, on a live tre (uvicorn, a worker,
bubblewrap jobs), with raw httpx and the real py-tes client.

Every answer of every route (service-info; create; get in each view; list in each view, with
each filter and across pages; cancel) is validated against `tests/tes/spec/` with every TES
object closed (no field outside TES 1.1), times checked as RFC 3339, and each view's content
checked against what the spec's ``view`` parameter says it holds. Deviations that tre makes on
purpose are documented in docs/tes.md ("Conformance") and asserted here as they are.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.tes import tes_spec
from tests.tes.conftest import LiveTre, needs_bwrap
from tests.tes.test_pytes_client import COUNT, client, count_task

pytestmark = needs_bwrap
API = "/ga4gh/tes/v1"
VIEWS = ("MINIMAL", "BASIC", "FULL")


def _http(live: LiveTre, user: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=live.url + API, headers=live.headers(user), timeout=30)


def _task_ok(task: dict[str, Any], view: str) -> None:
    """A task answer conforms to tesTask and holds what ``view`` says, no more, no less."""
    if view == "MINIMAL":
        # The spec's `view` says MINIMAL holds ONLY id and state, while tesTask requires
        # `executors`: the view wins (py-tes reads it so too).
        assert set(task) == {"id", "state"}, task
        assert not tes_spec.errors("tesTask", task, drop_required=True), task
        return
    assert not tes_spec.errors("tesTask", task), tes_spec.errors("tesTask", task)
    assert not tes_spec.rfc3339_problems(task), tes_spec.rfc3339_problems(task)
    assert task["id"] and task["state"] and task["executors"] and task["creation_time"]
    contents = [i.get("content") for i in task.get("inputs", [])]
    logs = task.get("logs") or []
    system_logs = [log.get("system_logs") for log in logs]
    outs = [(e.get("stdout"), e.get("stderr")) for log in logs for e in log["logs"]]
    if view == "BASIC":
        # BASIC: all fields EXCEPT executor stdout/stderr, inputs' content, system_logs.
        assert contents == [None] * len(contents), task
        assert system_logs == [None] * len(system_logs), task
        assert outs == [(None, None)] * len(outs), task
    else:
        assert all(s is not None for s in system_logs), task
        assert all(o is not None and e is not None for o, e in outs), task


def _page_ok(page: dict[str, Any], view: str) -> None:
    """A list answer conforms to tesListTasksResponse, each task to its view (MINIMAL tasks
    lack the `executors` tesTask requires, as the spec's view says they must)."""
    assert set(page) <= {"tasks", "next_page_token"} and isinstance(page["tasks"], list), page
    if view != "MINIMAL":
        assert not tes_spec.errors("tesListTasksResponse", page), tes_spec.errors(
            "tesListTasksResponse", page
        )
    for task in page["tasks"]:
        _task_ok(task, view)


def _wait(http: httpx.Client, task_id: str, until: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = http.get(f"/tasks/{task_id}", params={"view": "BASIC"}).json()
        if task["state"] in until or time.monotonic() > deadline:
            return task
        time.sleep(0.3)


def _stopped(live: LiveTre, task_id: str) -> None:
    with _http(live) as http:
        http.post(f"/tasks/{task_id}:cancel")
        _wait(http, task_id, {"CANCELED", "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"}, timeout=30)


def _problem(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return str(body["detail"])


def test_service_info_is_ga4gh_service_info_with_the_tes_fields(live_tre: LiveTre) -> None:
    with _http(live_tre) as http:
        info = http.get("/service-info").json()
    assert not tes_spec.errors("tesServiceInfo", info), tes_spec.errors("tesServiceInfo", info)
    assert set(info) <= tes_spec.service_info_fields(), set(info) - tes_spec.service_info_fields()
    assert info["type"] == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert set(info["organization"]) == {"name", "url"}
    assert tes_spec.is_uri(info["organization"]["url"]) and tes_spec.is_uri(info["documentationUrl"])
    # py-tes reads the same document (its own model refuses unknown fields).
    assert client(live_tre).get_service_info().storage == ["tre://dataset/"]
    # Every role may read it; nobody else (a TRE says nothing to strangers).
    for user in ("bob", "dana", "root"):
        with _http(live_tre, user) as http:
            assert http.get("/service-info").status_code == 200
    _problem(httpx.get(live_tre.url + API + "/service-info", timeout=10), 401)


def test_every_answer_conforms_through_a_tasks_life(
    live_tre: LiveTre, request: pytest.FixtureRequest
) -> None:
    cli = client(live_tre)
    http = _http(live_tre)
    # Created with py-tes and with raw JSON (the same document py-tes sends).
    done_id = cli.create_task(count_task(name="conf-done", stage="a"))
    raw = count_task(name="conf-fail", stage="b").as_dict()
    raw["executors"][0]["command"] = ["python3", "-c", "import sys; print('about to fail'); sys.exit(3)"]
    created = http.post("/tasks", json=raw)
    assert created.status_code == 200, created.text
    assert not tes_spec.errors("tesCreateTaskResponse", created.json())
    fail_id = created.json()["id"]
    sleeper = count_task(name="conf-cancel", stage="c").as_dict()
    sleeper["executors"][0]["command"] = ["python3", "-c", "import time; time.sleep(120)"]
    cancel_id = http.post("/tasks", json=sleeper).json()["id"]
    # Should an assertion fail first, the sleeper is still stopped before the worker is: a
    # worker stopped under a running job leaves its sandbox's output mount behind.
    request.addfinalizer(lambda: _stopped(live_tre, cancel_id))

    # While it runs: RUNNING (or QUEUED) in every view, each conforming.
    for view in VIEWS:
        task = http.get(f"/tasks/{cancel_id}", params={"view": view}).json()
        assert task["state"] in {"QUEUED", "RUNNING"}, task
        _task_ok(task, view)
    cancelled = http.post(f"/tasks/{cancel_id}:cancel")
    assert cancelled.status_code == 200 and cancelled.json() == {}
    assert not tes_spec.errors("tesCancelTaskResponse", cancelled.json())

    done = _wait(http, done_id, {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"})
    assert done["state"] == "COMPLETE", done
    failed = _wait(http, fail_id, {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"})
    assert failed["state"] == "EXECUTOR_ERROR", failed
    stopped = _wait(http, cancel_id, {"CANCELED"})
    assert stopped["state"] == "CANCELED", stopped

    for task_id in (done_id, fail_id, cancel_id):
        for view in VIEWS:
            task = http.get(f"/tasks/{task_id}", params={"view": view}).json()
            _task_ok(task, view)
            # py-tes takes the same answer (it raises on a field or state it does not know).
            assert cli.get_task(task_id, view).id == task_id
        # No view asked: MINIMAL (the spec's default).
        assert set(http.get(f"/tasks/{task_id}").json()) == {"id", "state"}

    full = http.get(f"/tasks/{fail_id}", params={"view": "FULL"}).json()
    (executor_log,) = full["logs"][0]["logs"]
    # The job exited 3; its researcher sees the class (tre.jobs.shown_run, redteam14b).
    assert executor_log["exit_code"] == 1 and "about to fail" in executor_log["stdout"]
    full = http.get(f"/tasks/{done_id}", params={"view": "FULL"}).json()
    assert full["inputs"][0]["content"] == COUNT
    assert {o["path"] for o in full["logs"][0]["outputs"]} == {"/output/summary.csv", "/output/tables/t1.csv"}
    # Defaults the server fills in: every input and output has its type.
    assert [i["type"] for i in full["inputs"]] == ["FILE", "DIRECTORY"]
    assert [o["type"] for o in full["outputs"]] == ["FILE", "DIRECTORY"]

    # Cancelling a task that already ended: CANCELED again is {}, any other end is 409.
    assert http.post(f"/tasks/{cancel_id}:cancel").json() == {}
    _problem(http.post(f"/tasks/{done_id}:cancel"), 409)
    _problem(http.post(f"/tasks/{fail_id}:cancel"), 409)

    # Listing: each view, every filter, pages of one; each answer conforms.
    ids = {done_id, fail_id, cancel_id}
    for view in VIEWS:
        page = http.get("/tasks", params={"view": view}).json()
        _page_ok(page, view)
        assert ids <= {t["id"] for t in page["tasks"]}
        assert "next_page_token" not in page  # the last page has no token
    seen: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"page_size": 1, "view": "BASIC"}
        if token:
            params["page_token"] = token
        page = http.get("/tasks", params=params).json()
        assert len(page["tasks"]) <= 1
        _page_ok(page, "BASIC")
        seen += [t["id"] for t in page["tasks"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert set(seen) == ids and len(seen) == 3  # newest first, each once
    assert seen == [cancel_id, fail_id, done_id]

    def listed(**params: Any) -> set[str]:
        page = http.get("/tasks", params=params).json()
        _page_ok(page, "MINIMAL")
        return {t["id"] for t in page["tasks"]}

    assert listed(name_prefix="conf-") == ids
    assert listed(name_prefix="conf-d") == {done_id}
    assert listed(name_prefix="conf_") == set()  # a literal prefix: '_' is no wildcard
    assert listed(state="COMPLETE") == {done_id}
    assert listed(state="EXECUTOR_ERROR") == {fail_id}
    assert listed(state="CANCELED") == {cancel_id}
    assert listed(state="PAUSED") == set()  # a state tre never answers filters to nothing
    assert listed(tag_key=["stage"], tag_value=["a"]) == {done_id}
    assert listed(tag_key=["stage"]) == ids  # no value: any task carrying the key
    assert listed(tag_key=["stage", "Project"], tag_value=["b", "lung"]) == {fail_id}
    assert listed(tag_key=["stage", "Project"], tag_value=["b", "other"]) == set()
    assert listed(tag_key=["missing"]) == set()

    # Bad parameters: a problem document naming what is wrong, nothing listed.
    _problem(http.get("/tasks", params={"page_size": 2048}), 422)
    _problem(http.get("/tasks", params={"page_size": 0}), 422)
    _problem(http.get("/tasks", params={"state": "DONE"}), 422)
    _problem(http.get("/tasks", params={"view": "ALL"}), 422)
    _problem(http.get("/tasks", params={"page_token": "not-a-token"}), 400)
    _problem(http.get(f"/tasks/{done_id}", params={"view": "full"}), 422)
    _problem(http.get("/tasks/nope"), 404)
    _problem(http.post("/tasks/nope:cancel"), 404)
    http.close()


def test_a_task_is_refused_with_a_reason_for_each_field_tre_cannot_honour(live_tre: LiveTre) -> None:
    """Fields TES 1.1 defines that tre deliberately does not honour answer 400 with a reason
    (docs/tes.md); fields outside TES 1.1 are 422."""
    base = count_task(name="refused").as_dict()

    def variant(**change: Any) -> dict[str, Any]:
        return {**base, **change}

    executor = base["executors"][0]
    cases: list[tuple[dict[str, Any], int, str]] = [
        (variant(volumes=["/vol/A"]), 400, "volume"),
        (variant(executors=[executor, executor]), 400, "executor"),
        (variant(resources={"zones": ["eu-west-1a"]}), 400, "zone"),
        (
            variant(resources={"backend_parameters": {"VmSize": "x"}, "backend_parameters_strict": True}),
            400,
            "VmSize",
        ),
        (variant(inputs=[{"url": "s3://bucket/x", "path": "/data/x"}]), 400, "network"),
        (variant(outputs=[{"url": "s3://b/o", "path": "/tmp/o"}]), 400, "/output"),
        (variant(tags={"Project": "lung", "tre.job_state": "succeeded"}), 400, "tre."),
        (variant(unknown_field=1), 422, ""),
        (variant(executors=[]), 422, ""),
        (variant(state="COMPLETE", executors=[{**executor, "command": []}]), 422, ""),
    ]
    with _http(live_tre) as http:
        before = http.get("/tasks").json()["tasks"]
        for doc, status, says in cases:
            detail = _problem(http.post("/tasks", json=doc), status)
            assert says in detail, (says, detail)
        assert http.get("/tasks").json()["tasks"] == before  # nothing was created


@pytest.mark.parametrize("user", ["bob", "dana"])
def test_another_projects_task_is_no_task(live_tre: LiveTre, user: str) -> None:
    with _http(live_tre) as http:
        task_id = http.post("/tasks", json=count_task(name="private").as_dict()).json()["id"]
    with _http(live_tre, user) as other:
        _problem(other.get(f"/tasks/{task_id}", params={"view": "FULL"}), 404)
        assert task_id not in {t["id"] for t in other.get("/tasks").json()["tasks"]}
        status = 404 if user == "bob" else 403
        _problem(other.post(f"/tasks/{task_id}:cancel"), status)
