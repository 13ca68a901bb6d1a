"""A member of a job's project sees its log and output names as a researcher, whatever other
roles they hold.

Staff (DAC members, auditors, admins) see a job's raw log and every output name: they review
what leaves. But the roles were checked alone, so a researcher who was also an auditor (or a
DAC member) read their own project's jobs raw: the patient's name the job printed, and the
output named after it, in `tre logs` / `tre outputs` and in their own egress request. The
airlock already hid reviewer-only evidence from a requester holding a staff role; now the
same holds for the log and the names: within their own project, a member is a researcher.
"""

from __future__ import annotations

import pydicom
from pydicom.data import get_testdata_file

from tests.worlds import WorldFactory
from tre import registry
from tre.jobs.paths import log_path
from tre.store.db import session_scope

NAME = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)


def _job(engine, settings, members: dict[str, list[str]]) -> str:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        make = WorldFactory(s)
        make.users(members)
        for user in members:
            registry.add_member(s, "root", "p1", user)
        job_id = make.finished_job(
            settings, "p1", "alice", ["ct1"], {"counts.csv": b"n\n2\n", f"{NAME}.txt": b"x"}
        )
    log_path(settings, job_id).write_text(f"epoch 1 loss 0.3\npatient {NAME}\n")
    return job_id


def test_a_member_with_a_staff_role_gets_the_researchers_view(
    app_client, world, engine, settings, token_for
) -> None:  # type: ignore[no-untyped-def]
    job_id = _job(engine, settings, {"carol": ["researcher", "auditor"], "dave": ["researcher", "dac"]})
    for user, roles in (("carol", ("researcher", "auditor")), ("dave", ("researcher", "dac"))):
        headers = {"Authorization": f"Bearer {token_for(user, *roles)}"}
        log = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=headers)
        assert log.status_code == 200 and "epoch 1" in log.text and NAME not in log.text, (user, log.text)
        outputs = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=headers).json()
        assert sum(o["name_withheld"] for o in outputs) == 1 and NAME not in str(outputs), (user, outputs)
        # Their own request cannot confirm the name, and its view withholds it.
        body = {"job_id": job_id, "files": [f"{NAME}.txt"], "justification": "counts"}
        assert app_client.post("/api/v1/egress/requests", headers=headers, json=body).status_code == 422
        index = next(o["index"] for o in outputs if o["name_withheld"])
        req = app_client.post(
            "/api/v1/egress/requests", headers=headers, json={**body, "files": [f"#{index}"]}
        )
        assert req.status_code == 201 and NAME not in req.text, req.text
        shown = app_client.get(f"/api/v1/egress/requests/{req.json()['id']}", headers=headers)
        assert shown.status_code == 200 and NAME not in shown.text


def test_staff_outside_the_project_still_see_it_raw(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    job_id = _job(engine, settings, {})
    audrey = world.headers["audrey"]
    assert NAME in app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=audrey).text
    assert NAME in app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=audrey).text
