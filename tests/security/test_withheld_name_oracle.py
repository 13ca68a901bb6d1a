"""A withheld output name can be neither confirmed nor read back through the airlock.

Researchers see an output whose name the screening withholds only as its index, size and
hash (`egress_review.outputnames`). Two ways around that were open in the egress request:
naming a file by a *guessed path* answered like a recorded one (a request was opened) while
an unknown path was refused, so a researcher could confirm a patient's name that the job had
written as a file name, one guess at a time; and a file that could not be frozen was refused
with its real path in the problem's detail. Now a path is accepted from a researcher only
where they may see it (a withheld one answers exactly like an unknown one), and the refusal
names the file as the researcher knows it.
"""

from __future__ import annotations

import pydicom
from pydicom.data import get_testdata_file

from tests.worlds import WorldFactory
from tre.store.db import session_scope

NAME = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)
LEAKY = f"{NAME}.txt"


def _job(engine, settings) -> str:  # type: ignore[no-untyped-def]
    outputs = {"summary.csv": b"n\n2\n", LEAKY: b"x"}
    with session_scope(engine) as s:
        return WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], outputs)


def _request(client, headers, job_id: str, name: str):  # type: ignore[no-untyped-def]
    body = {"job_id": job_id, "files": [name], "justification": "counts"}
    return client.post("/api/v1/egress/requests", headers=headers, json=body)


def test_a_withheld_name_answers_like_an_unknown_one(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    job_id = _job(engine, settings)
    alice = world.headers["alice"]
    listed = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=alice).json()
    withheld = [o for o in listed if o["name_withheld"]]
    assert len(withheld) == 1 and withheld[0]["path"] is None, listed

    guessed = _request(app_client, alice, job_id, LEAKY)
    unknown = _request(app_client, alice, job_id, "Nobody^Atall.txt")
    assert guessed.status_code == unknown.status_code == 422, guessed.text
    assert guessed.json() == unknown.json()
    assert NAME not in guessed.text
    # Named as the listing shows it, the same file is requested (and its name stays withheld).
    by_index = _request(app_client, alice, job_id, f"#{withheld[0]['index']}")
    assert by_index.status_code == 201, by_index.text
    assert NAME not in by_index.text


def test_a_file_that_cannot_be_frozen_is_not_named_by_its_withheld_path(
    app_client, world, engine, settings
) -> None:  # type: ignore[no-untyped-def]
    job_id = _job(engine, settings)
    alice = world.headers["alice"]
    listed = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=alice).json()
    (withheld,) = [o for o in listed if o["name_withheld"]]
    # Altered after it was recorded (same size): freezing it fails on its hash.
    (settings.jobs_dir / job_id / "output" / LEAKY).write_bytes(b"y")
    for wanted in (f"#{withheld['index']}", f"sha256:{withheld['sha256']}"):
        refused = _request(app_client, alice, job_id, wanted)
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"] == "urn:tre:problem:output-modified"
        assert NAME not in refused.text and "sha256-" in refused.json()["detail"]


def test_a_tes_file_output_declared_with_a_withheld_name_is_not_confirmed() -> None:
    """A TES task declares its FILE outputs by path; its view listed a file log for each one
    the job wrote, so declaring guessed paths confirmed a withheld name in the same way."""
    from tre.store.models import TesTask
    from tre.tes.views import ShownOutput, _output_logs

    declared = [{"path": f"/output/{LEAKY}", "type": "FILE"}, {"path": "/output/summary.csv", "type": "FILE"}]
    row = TesTask(job_id="0" * 32, outputs=declared)
    shown = [ShownOutput(0, LEAKY, False, 1), ShownOutput(1, "summary.csv", True, 4)]
    logs, _cut = _output_logs(shown, row)
    assert [log.path for log in logs] == ["/output/summary.csv"]
    assert NAME not in str(logs)
