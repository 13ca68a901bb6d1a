"""What a check quotes from the job's files reaches the requester only screened.

Check results are shown to the requester as soon as the request is made, before any review.
An ACRO ``results.json`` is the job's own file, and the airlock showed its output ids and
statuses to the requester in the check's evidence and reason: 200 ids of 80 characters, any
text the job chose (here the patient's name, and a slice's bytes in base64). The results'
requester-visible text is now judged by the job's log screen (`egress_review.quoted`): the
requester sees fixed words, the reviewers the original as reviewer-only evidence.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pydicom
from pydicom.data import get_testdata_file

from tests.worlds import WorldFactory
from tre.store.db import session_scope

CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
NAME = str(CT.PatientName)
TABLE = b"site,n\nA,45\nB,40\n"
# 60 bytes of pixels per id: 80 base64 characters, the most an id keeps.
CHUNKS = [base64.b64encode(CT.PixelData[i * 60 : (i + 1) * 60]).decode() for i in range(6)]


def _results_json() -> bytes:
    records = {
        f"output_{i}": {
            "uid": uid,
            "status": "pass",
            "type": "table",
            "files": [{"name": "table.csv"}],
            "summary": "pass",
        }
        for i, uid in enumerate([NAME, *CHUNKS])
    }
    return json.dumps({"version": "0.4.8", "results": records}).encode()


def test_acro_ids_are_screened_for_the_requester(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    outputs = {
        "acro/table.csv": TABLE,
        "acro/checksums/table.csv.txt": hashlib.sha256(TABLE).hexdigest().encode(),
        "acro/results.json": _results_json(),
    }
    with session_scope(engine) as s:
        job_id = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], outputs)
    body = {"job_id": job_id, "files": ["acro/table.csv", "acro/results.json"], "justification": "counts"}
    made = app_client.post("/api/v1/egress/requests", headers=world.headers["alice"], json=body)
    assert made.status_code == 201, made.text
    request_id = made.json()["id"]
    mine = app_client.get(f"/api/v1/egress/requests/{request_id}", headers=world.headers["alice"])
    for answer in (made, mine):
        assert NAME not in answer.text and not any(c[:40] in answer.text for c in CHUNKS)
        checks = [c for f in answer.json()["files"] for c in f["checks"] if c["check"].startswith("acro")]
        assert checks and any("reviewers see it" in c["reason"] for c in checks), checks
    # The reviewers still read what ACRO claimed.
    staff = app_client.get(f"/api/v1/egress/requests/{request_id}", headers=world.headers["dana"])
    assert NAME in staff.text and CHUNKS[0] in staff.text
    # Checks that quote nothing of the sort are shown as they were.
    table = next(f for f in mine.json()["files"] if f["path"] == "acro/table.csv")
    assert any(c["check"] == "sdc" and "reviewers see it" not in c["reason"] for c in table["checks"])
