"""A reviewer in the request's project cannot read its unreleased files in the review panel.

Reading the staged files is what review is. A user who is a researcher of a project and also
holds the DAC role is refused a vote on that project's requests (conflicted), but the panel
still rendered every file's preview for them, from the same fragment cache other reviewers'
views filled: a researcher could read their own project's outputs before any approval. Now a
conflicted reviewer sees the request's cards collapsed, never from the cache, with names as a
researcher sees them, and the file rendering answers 403.
"""

from __future__ import annotations

import hashlib

import pydicom
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file

from tests.egress.test_api_panel import csrf_of
from tests.worlds import WorldFactory
from tre import registry
from tre.jobs.output_handles import handle_key, output_handle
from tre.store.db import session_scope

SECRET = "unreleased-finding-7731"


def _panel(client: TestClient, token: str) -> None:
    page = client.get("/panel/login")
    client.post("/panel/login", data={"token": token, "csrf": csrf_of(page.text)})


def test_a_conflicted_reviewer_gets_no_preview(app, world, engine, settings, token_for) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        make = WorldFactory(s)
        make.users({"dave": ["researcher", "dac"]})
        registry.add_member(s, "root", "p1", "dave")
        job_id = make.finished_job(settings, "p1", "alice", ["ct1"], {"notes.txt": f"{SECRET}\n".encode()})
    with TestClient(app) as alice:
        made = alice.post(
            "/api/v1/egress/requests",
            headers=world.headers["alice"],
            json={"job_id": job_id, "files": ["notes.txt"], "justification": "notes"},
        )
        assert made.status_code == 201, made.text
    request_id, file_id = made.json()["id"], made.json()["files"][0]["id"]
    # An independent reviewer's view renders (and caches) the preview.
    with TestClient(app) as dana:
        _panel(dana, token_for("dana", "dac"))
        assert SECRET in dana.get(f"/panel/requests/{request_id}").text
    with TestClient(app) as dave:
        _panel(dave, token_for("dave", "researcher", "dac"))
        page = dave.get(f"/panel/requests/{request_id}")
        assert page.status_code == 200 and SECRET not in page.text
        assert SECRET not in dave.get(f"/panel/requests/{request_id}?preview={file_id}").text
        render = dave.get(f"/panel/requests/{request_id}/files/{file_id}/render.png")
        assert render.status_code == 403 and SECRET not in render.text


def test_a_member_gets_the_disclosure_record_as_a_researcher(app, world, engine, settings, token_for) -> None:  # type: ignore[no-untyped-def]
    name = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)
    with session_scope(engine) as s:
        make = WorldFactory(s)
        make.users({"dave": ["researcher", "dac"]})
        registry.add_member(s, "root", "p1", "dave")
        job_id = make.finished_job(settings, "p1", "alice", ["ct1"], {f"{name}.txt": b"x"})
    with TestClient(app) as alice:
        made = alice.post(
            "/api/v1/egress/requests",
            headers=world.headers["alice"],
            json={"job_id": job_id, "files": ["#0"], "justification": "notes"},
        )
    # Blocked at once (the name is an identifier): decided, with its disclosure record.
    assert made.status_code == 201 and made.json()["disclosure_available"], made.text
    url = f"/panel/requests/{made.json()['id']}/disclosure.json"
    with TestClient(app) as dana:
        _panel(dana, token_for("dana", "dac"))
        assert name in dana.get(url).text
    with TestClient(app) as dave:
        _panel(dave, token_for("dave", "researcher", "dac"))
        record = dave.get(url)
        assert record.status_code == 200 and name not in record.text and "sha256-" in record.text
        # ... and with a keyed handle, never the real hash (nor its prefix), in the record, the
        # request's page and the queue; the independent reviewer sees the real hash.
        real = hashlib.sha256(b"x").hexdigest()
        handle = output_handle(handle_key(settings.keys_dir), job_id, real)
        assert f"sha256-{handle[:16]}" in record.text and real[:16] not in record.text
        page = dave.get(f"/panel/requests/{made.json()['id']}")
        queue = dave.get("/panel/", params={"show": "blocked"})
        assert page.status_code == queue.status_code == 200
        assert real[:16] not in page.text and real[:16] not in queue.text
        assert f"sha256-{handle[:16]}" in queue.text
    with TestClient(app) as dana:
        _panel(dana, token_for("dana", "dac"))
        assert real in dana.get(url).text
