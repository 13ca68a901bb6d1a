"""A backend failure's own words never reach the researcher in the job's ``reason``.

The reason is shown unscreened (also under ``status_only``). The local sandbox's reasons were
already fixed vocabulary, but the worker wrapped any other failure as ``executor error:
<the exception's text>``, and an exception raised while handling a job's files quotes them
(an ``OSError`` names the file: here one the job named after the patient). The text now goes
to the worker log under a reference id, and the reason names only that reference.
"""

from __future__ import annotations

import logging

import pydicom
from pydicom.data import get_testdata_file

from tests.worlds import job_body
from tre.executors.base import Executor, JobResult, JobSpec, RunControl
from tre.jobs.worker import Worker

NAME = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)


class FailsOnAJobFile(Executor):
    """A backend that trips over a file the job wrote (as collecting outputs can)."""

    name = "local"

    def run(self, spec: JobSpec, control: RunControl) -> JobResult:
        raise OSError(5, "Input/output error", f"{spec.output_dir}/{NAME}.csv")


def test_the_reason_names_a_reference_not_the_error(app_client, world, engine, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    alice = world.headers["alice"]
    job_id = app_client.post("/api/v1/jobs", headers=alice, json=job_body()).json()["id"]
    worker = Worker(settings, engine, executor=FailsOnAJobFile(), concurrency=1)
    with caplog.at_level(logging.ERROR, logger="tre.jobs.worker"):
        try:
            worker.run_until_idle(timeout_s=60)
        finally:
            worker._pool.shutdown(wait=True)
    job = app_client.get(f"/api/v1/jobs/{job_id}", headers=alice).json()
    assert job["state"] == "failed"
    assert NAME not in job["reason"] and "Input/output" not in job["reason"], job["reason"]
    ref = job["reason"].removeprefix("executor error (ref: ").removesuffix(")")
    assert len(ref) == 12 and ref.isalnum(), job["reason"]
    # Staff find the detail in the worker's log under the same reference.
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and NAME in str(logged[0].exc_info[1])
