"""The hub's TES FULL view holds what TES 1.1 gives a FULL task, and only what the researcher
may see.

Round 13: the FULL view was the BASIC one (no inline content, no task log at all). Now a
task log per node: the node's screened log (the submitter's view at the node, within its
budget) as the executor's stdout with its exit code, the files the node's airlock released
as output file logs, the node's state in fixed words. A planted node answer carries a secret
in every way a node could try (an extra field on a state report or on its log, a log over
the budget, a file uploaded but never released, a log for another node's child): the secret
reaches no researcher-facing answer, and the documents still validate against TES 1.1 and
parse with py-tes.
"""

from __future__ import annotations

import hashlib
import json

import tes.utils

from tests.federation.hubkit import signed
from tests.federation.test_hub_api import IMAGE, hub  # noqa: F401 - `hub` is a fixture
from tests.tes import tes_spec
from tre.federation.wire import MAX_SCREENED_LOG_CHARS, child_id

SECRET = "SECRET-4b1d-raw-node-output"
CODE = "print('hello from a node')\n"
TASK = {
    "name": "full-view",
    "inputs": [{"path": "/code/run.py", "content": CODE}],
    "outputs": [{"path": "/output/summary.csv", "url": "file:///summary.csv"}],
    "executors": [{"image": IMAGE, "command": ["python3", "run.py"], "workdir": "/code"}],
    "tags": {"Project": "fedlung"},
}


def _researcher_answers(client, task_id: str) -> str:  # type: ignore[no-untyped-def]
    """Every answer a researcher of the project can get about the task, as one text."""
    alice = client.tokens["alice"]
    got = []
    for path, params in [
        (f"/ga4gh/tes/v1/tasks/{task_id}", {"view": "FULL"}),
        (f"/ga4gh/tes/v1/tasks/{task_id}", {"view": "BASIC"}),
        ("/ga4gh/tes/v1/tasks", {"view": "FULL"}),
        (f"/hub/v1/jobs/{task_id}", {}),
        ("/hub/v1/jobs", {}),
    ]:
        resp = client.get(path, params=params, headers=alice)
        assert resp.status_code == 200, (path, resp.text)
        got.append(resp.text)
    return "\n".join(got)


def test_the_full_view_shows_screened_logs_and_released_files_never_a_planted_secret(hub) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    made = hub.post("/ga4gh/tes/v1/tasks", json=TASK, headers=hub.tokens["alice"])
    assert made.status_code == 200, made.text
    task_id = made.json()["id"]
    a, b = hub.nodes["a"], hub.nodes["b"]
    cid_a, cid_b = child_id(task_id, "node-a"), child_id(task_id, "node-b")
    signed(hub, a, "POST", "/hub/v1/agent/poll", {"wait_s": 0})
    signed(hub, b, "POST", "/hub/v1/agent/poll", {"wait_s": 0})

    def state(node, cid, body):  # type: ignore[no-untyped-def]
        return signed(hub, node, "POST", f"/hub/v1/agent/children/{cid}/state", body)

    # A log before the node's first report (a quick job ends before it): kept, not shown
    # while the hub shows the child pending.
    log_a = f"/hub/v1/agent/children/{cid_a}/log"
    assert signed(hub, a, "PUT", log_a, {"exit_code": 0, "log": "early\n"}).status_code == 200
    early = hub.get(f"/ga4gh/tes/v1/tasks/{task_id}", params={"view": "FULL"}, headers=hub.tokens["alice"])
    assert [log["logs"] for log in early.json()["logs"]] == [[], []]
    for st in ("queued", "running", "awaiting_review"):
        assert state(a, cid_a, {"state": st}).status_code == 200
        assert state(b, cid_b, {"state": st}).status_code == 200
    # The hostile node's tries, each refused and nothing of it kept.
    assert state(a, cid_a, {"state": "refused", "reason": "dac_rejected", "log": SECRET}).status_code == 422
    assert signed(hub, a, "PUT", log_a, {"exit_code": 0, "log": "ok", "raw_log": SECRET}).status_code == 422
    huge = {"exit_code": 0, "log": SECRET + "x" * MAX_SCREENED_LOG_CHARS}
    assert signed(hub, a, "PUT", log_a, huge).status_code in (413, 422)
    assert signed(hub, a, "PUT", log_a, {"exit_code": 9000, "log": SECRET}).status_code == 422
    assert signed(hub, a, "PUT", log_a, raw=b"\xff\xfe" + SECRET.encode()).status_code == 422
    log_b = f"/hub/v1/agent/children/{cid_b}/log"
    assert signed(hub, a, "PUT", log_b, {"exit_code": 0, "log": SECRET}).status_code == 404
    data = (SECRET + "\n").encode()
    sha = hashlib.sha256(data).hexdigest()
    assert signed(hub, a, "PUT", f"/hub/v1/agent/children/{cid_a}/files/{sha}", raw=data).status_code == 200
    # What the node may send: the screened log, then its DAC's refusal.
    assert signed(hub, a, "PUT", log_a, {"exit_code": 0, "log": "step 1 done\n"}).status_code == 200
    assert state(a, cid_a, {"state": "refused", "reason": "dac_rejected"}).status_code == 200
    # node-b releases one file through its airlock.
    out = b"site,count\nB,7\n"
    out_sha = hashlib.sha256(out).hexdigest()
    assert (
        signed(hub, b, "PUT", f"/hub/v1/agent/children/{cid_b}/files/{out_sha}", raw=out).status_code == 200
    )
    # An exit code as a node before redteam14b sent it (the job's own byte): shown as a class.
    assert signed(hub, b, "PUT", log_b, {"exit_code": 77, "log": "counted\n"}).status_code == 200
    release = {
        "files": [{"name": "summary.csv", "sha256": out_sha, "size": len(out)}],
        "disclosure_record": {"released": True, "files": [{"sha256": out_sha, "size": len(out)}]},
        "checkpoint": b.checkpoint(),
    }
    resp = signed(hub, b, "POST", f"/hub/v1/agent/children/{cid_b}/release", release)
    assert resp.status_code == 200, resp.text

    full = hub.get(
        f"/ga4gh/tes/v1/tasks/{task_id}", params={"view": "FULL"}, headers=hub.tokens["alice"]
    ).json()
    assert not tes_spec.errors("tesTask", full), tes_spec.errors("tesTask", full)
    assert not tes_spec.rfc3339_problems(full), full
    parsed = tes.utils.unmarshal(full, tes.Task)  # py-tes reads it as a Task
    assert parsed.state == "COMPLETE" and len(parsed.logs) == 2
    assert [i["content"] for i in full["inputs"]] == [CODE]  # FULL: the inline content
    by_node = {log["metadata"]["tre.node"]: log for log in full["logs"]}
    assert by_node["node-a"]["logs"] == [{"exit_code": 0, "stdout": "step 1 done\n", "stderr": ""}]
    assert by_node["node-a"]["outputs"] == []  # uploaded, never released: not listed
    assert by_node["node-a"]["system_logs"] == ["node node-a: refused (dac_rejected)"]
    assert by_node["node-b"]["logs"][0]["stdout"] == "counted\n"
    assert by_node["node-b"]["logs"][0]["exit_code"] == 1
    assert by_node["node-b"]["outputs"] == [
        {
            "url": f"http://testserver/hub/v1/jobs/{task_id}/results/node-b/summary.csv",
            "path": "summary.csv",
            "size_bytes": str(len(out)),
        }
    ]
    basic = hub.get(f"/ga4gh/tes/v1/tasks/{task_id}", params={"view": "BASIC"}, headers=hub.tokens["alice"])
    basic_doc = basic.json()
    assert not tes_spec.errors("tesTask", basic_doc), tes_spec.errors("tesTask", basic_doc)
    assert "content" not in basic_doc["inputs"][0]
    assert all(
        "stdout" not in e and "system_logs" not in log for log in basic_doc["logs"] for e in log["logs"]
    )
    listed = hub.get("/ga4gh/tes/v1/tasks", params={"view": "FULL"}, headers=hub.tokens["alice"]).json()
    assert not tes_spec.errors("tesListTasksResponse", listed)

    assert SECRET not in _researcher_answers(hub, task_id)
    # The hub's own job view does not carry the inline content either (the code archive does).
    assert CODE not in json.dumps(hub.get(f"/hub/v1/jobs/{task_id}", headers=hub.tokens["alice"]).json())
    # Another researcher sees nothing of it.
    assert (
        hub.get(
            f"/ga4gh/tes/v1/tasks/{task_id}", params={"view": "FULL"}, headers=hub.tokens["bob"]
        ).status_code
        == 404
    )
