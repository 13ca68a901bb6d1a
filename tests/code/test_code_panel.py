# ruff: noqa: F811 - pytest fixtures imported from the support modules are redefined as parameters
"""The DAC panel shows reviewers which image and which code produced the files they review."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.egress.test_api_panel import BASE, login, panel_app, rid, world  # noqa: F401
from tests.egress.test_workflow_support import esettings  # noqa: F401
from tre.store.models import Job


def test_request_page_names_the_jobs_image_and_code(panel_app, db, world, token_for, rid) -> None:  # type: ignore[no-untyped-def]
    with TestClient(panel_app) as c:
        login(c, token_for("dora", "dac"))
        page = c.get(f"/panel/requests/{rid}")
        assert page.status_code == 200 and "none sent with the job" in page.text
        with db.begin() as s:
            job = s.get(Job, world.job_id)
            job.code_hash = "c0de" * 16
            image = job.image
        page = c.get(f"/panel/requests/{rid}")
        assert "c0de" * 16 in page.text and f"tre job code {world.job_id} -o code.tar.gz" in page.text
        assert image in page.text
