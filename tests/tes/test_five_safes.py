"""A Five Safes TES-style submission, as a federation's submission layer sends it (raw JSON:
``tags.Project`` and ``tags.tres``, one executor, one inline input), runs end to end; its
output is never sent to the declared ``url`` and appears in the airlock, where the researcher
asks for its release and the task's view follows the review."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.tes.conftest import IMAGE, LiveTre, needs_bwrap

pytestmark = needs_bwrap

SCRIPT = """\
import os
n = len(os.listdir('/data'))
with open('/output/result.txt', 'w') as fh:
    fh.write('the cohort has between 1 and 10 scans\\n' if n < 10 else 'many\\n')
print('done')
"""


class Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def _record(self) -> None:
        Recorder.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.end_headers()

    do_GET = do_PUT = do_POST = _record

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def output_sink() -> Iterator[str]:
    """A storage endpoint on 127.0.0.1 that records any upload attempt."""
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)


def test_five_safes_task_ends_in_the_airlock(live_tre: LiveTre, output_sink: str) -> None:
    tes_url = f"{live_tre.url}/ga4gh/tes/v1"
    alice = live_tre.headers("alice")
    task = {
        "name": "five-safes-count",
        "inputs": [
            {"name": "script", "path": "/code/run.py", "type": "FILE", "content": SCRIPT},
            {"url": "tre://dataset/lidc", "path": "/data", "type": "DIRECTORY"},
        ],
        "outputs": [
            {"path": "/output/result.txt", "url": f"{output_sink}/upload/result.txt", "type": "FILE"}
        ],
        "executors": [{"image": IMAGE, "command": ["python3", "/code/run.py"]}],
        "tags": {"Project": "lung", "tres": "tre-a|tre-b"},
    }
    created = requests.post(f"{tes_url}/tasks", json=task, headers=alice, timeout=30)
    assert created.status_code == 200 and set(created.json()) == {"id"}, created.text
    task_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while (
        state := requests.get(f"{tes_url}/tasks/{task_id}", headers=alice, timeout=10).json()["state"]
    ) in (
        "QUEUED",
        "INITIALIZING",
        "RUNNING",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state == "COMPLETE"

    view = requests.get(
        f"{tes_url}/tasks/{task_id}", params={"view": "BASIC"}, headers=alice, timeout=10
    ).json()
    assert view["tags"]["tres"] == "tre-a|tre-b" and view["tags"]["tre.egress"] == "none"
    (out_log,) = view["logs"][0]["outputs"]
    assert out_log["path"] == "/output/result.txt" and out_log["size_bytes"] == "40"  # 38 bytes, rounded up
    assert Recorder.seen == []  # nothing was uploaded to the declared url

    # The job is the task: the code it ran is the inline input, read-only at /code.
    job = requests.get(f"{live_tre.url}/api/v1/jobs/{task_id}", headers=alice, timeout=10).json()
    assert job["dataset_ids"] == ["lidc"] and job["code_hash"]
    listing = requests.get(
        f"{live_tre.url}/api/v1/jobs/{task_id}/code/files", headers=live_tre.headers("dana"), timeout=10
    ).json()
    assert [e["path"] for e in listing["entries"]] == ["run.py"]

    # The output is in the airlock: the researcher asks for its release by index.
    outputs = requests.get(f"{live_tre.url}/api/v1/jobs/{task_id}/outputs", headers=alice, timeout=10).json()
    # a size is a number the job chose: researchers see it rounded up (tre.jobs.shown_size)
    assert [(o["size"], o["size_rounded"]) for o in outputs] == [(40, True)]
    index = out_log["url"].rsplit("/", 1)[1]
    asked = requests.post(
        f"{live_tre.url}/api/v1/egress/requests",
        json={"job_id": task_id, "files": [f"#{index}"], "justification": "aggregate count for the paper"},
        headers=alice,
        timeout=60,
    )
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert request["state"] in ("awaiting_review", "blocked")
    dac_view = requests.get(
        f"{live_tre.url}/api/v1/egress/requests/{request['id']}", headers=live_tre.headers("dana"), timeout=10
    ).json()
    assert [f["path"] for f in dac_view["files"]] == ["result.txt"]
    again = requests.get(
        f"{tes_url}/tasks/{task_id}", params={"view": "BASIC"}, headers=alice, timeout=10
    ).json()
    assert again["tags"]["tre.egress"] == request["state"]
    assert again["state"] == "COMPLETE"
    listed = requests.get(
        f"{tes_url}/tasks", params={"view": "BASIC", "tag_key": "tres"}, headers=alice, timeout=10
    ).json()
    assert [(t["id"], t["tags"]["tre.egress"]) for t in listed["tasks"]] == [(task_id, request["state"])]
