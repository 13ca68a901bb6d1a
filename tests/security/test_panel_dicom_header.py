"""A reviewer's request page must not grow with a hostile DICOM header.

Before the fix the panel built one table row per header element of every DICOM file in the
request: a 1.5 MB file with 150,000 tiny private elements took seconds and hundreds of MB
per page view (a 50 MB one, minutes and gigabytes), so a researcher could knock the panel
over for every reviewer who opened the request.
"""

from __future__ import annotations

import io

import pydicom
from fastapi.testclient import TestClient

from egress_review.panel import preview
from tests.egress.test_api_panel import csrf_of
from tests.egress.test_workflow_support import dicom_bytes, seed_world, with_egress_routes

BASE = "/api/v1/egress/requests"


def many_elements(n: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    for i in range(n):
        ds.add_new((0x0011 + 2 * (i // 0x0F00), 0x1000 + i % 0x0F00), "LO", "x")
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_header_table_is_capped() -> None:
    header = preview.dicom_header(many_elements(5000), set())
    assert len(header.rows) == preview.MAX_HEADER_ROWS
    assert header.error and "first" in header.error


def test_request_page_with_huge_header_stays_small(app, esettings, db, token_for) -> None:  # type: ignore[no-untyped-def]
    with_egress_routes(app)
    with db.begin() as s:
        world = seed_world(s, esettings, {"big.dcm": many_elements(6000)})
    with TestClient(app) as c:
        r = c.post(
            BASE,
            headers={"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"},
            json={"job_id": world.job_id, "files": ["big.dcm"], "justification": "x"},
        )
        assert r.status_code == 201, r.text
        page = c.get("/panel/login")
        c.post("/panel/login", data={"token": token_for("dana", "dac"), "csrf": csrf_of(page.text)})
        html = c.get(f"/panel/requests/{r.json()['id']}").text
    assert html.count("<tr") < preview.MAX_HEADER_ROWS + 200
