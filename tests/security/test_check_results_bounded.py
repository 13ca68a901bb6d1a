"""Check results quote the file they judged, and the file was written by research code.

Before the fix a CSV whose header was a 100,000-character ``count_...`` column put that name,
whole, into the check's reason and 20 more copies into its evidence: the audited
``egress.check`` entry passed the log's 64 KiB cap, so the request failed with a 500 after
its files were staged (the file could never be reviewed), and shorter names came back to the
requester verbatim, at any length.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from tests.egress.test_workflow_support import seed_world, with_egress_routes
from tre.store.models import AuditEntry

BASE = "/api/v1/egress/requests"


def test_reasons_and_evidence_from_hostile_content_are_bounded(
    app,
    app_client,
    esettings,
    db,  # type: ignore[no-untyped-def]
    token_for,
) -> None:
    with_egress_routes(app)
    column = "count_" + "A" * 100_000
    rows = "\n".join(f"{'B' * 500}{i},3" for i in range(30))
    table = f"label,{column}\n{rows}\n".encode()
    with db.begin() as s:
        world = seed_world(s, esettings, outputs={"t.csv": table})
    resp = app_client.post(
        BASE,
        headers={"Authorization": f"Bearer {token_for('alice', 'researcher')}"},
        json={"job_id": world.job_id, "files": ["t.csv"], "justification": "x"},
    )
    assert resp.status_code == 201, resp.text[:300]
    checks = resp.json()["files"][0]["checks"]
    assert any(c["check"] == "sdc:threshold" for c in checks)  # the rule still fired
    assert max(len(c["reason"]) for c in checks) <= 1000
    assert len(json.dumps([c["evidence"] for c in checks])) < 64_000
    with db() as s:
        assert max(len(e.body) for e in s.scalars(select(AuditEntry))) < 16_384
