"""Free-form JSON a node sends the hub is bounded (round 14, operations).

Failing before: a node's disclosure record was any JSON object up to the 1 MiB body limit,
stored whole on every child (and a search answer likewise). Now each is refused over its
bound with a problem naming the field and the limit, and nothing is stored.
"""

from __future__ import annotations

import hashlib

from tests.federation.hubkit import signed
from tests.federation.test_hub_api import _submit, hub  # noqa: F401 - `hub` is a fixture
from tre.federation.bounded_json import MAX_DISCLOSURE_RECORD_BYTES, MAX_JSON_DEPTH
from tre.federation.wire import child_id
from tre.store.db import session_scope
from tre.store.federation_models import FedChild


def _release(hub, a, cid: str, record: dict) -> tuple[int, dict]:  # type: ignore[no-untyped-def, type-arg]  # noqa: F811
    data = b"site,count\nA,42\n"
    sha = hashlib.sha256(data).hexdigest()
    assert signed(hub, a, "PUT", f"/hub/v1/agent/children/{cid}/files/{sha}", raw=data).status_code == 200
    body = {
        "files": [{"name": "summary.csv", "sha256": sha, "size": len(data)}],
        "disclosure_record": {"released": True, "files": [{"path": "summary.csv", "sha256": sha}], **record},
        "checkpoint": a.checkpoint(),
    }
    resp = signed(hub, a, "POST", f"/hub/v1/agent/children/{cid}/release", body)
    return resp.status_code, resp.json() | {"content-type": resp.headers["content-type"]}


def test_a_disclosure_record_over_its_bound_is_a_problem_and_nothing_is_stored(hub, engine_any) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    job = _submit(hub).json()
    a = hub.nodes["a"]
    cid = child_id(job["id"], "node-a")
    big = {"notes": ["x" * 1000] * (MAX_DISCLOSURE_RECORD_BYTES // 1000 + 10)}  # under the 1 MiB body
    nested: dict = {"leaf": 1}  # type: ignore[type-arg]
    for _ in range(MAX_JSON_DEPTH + 2):
        nested = {"n": nested}
    for record, words in ((big, "bytes of JSON"), (nested, "nests deeper")):
        status, answer = _release(hub, a, cid, record)
        assert status == 422, answer
        assert answer["content-type"].startswith("application/problem+json")
        assert "disclosure_record" in answer["detail"] and words in answer["detail"], answer["detail"]
        with session_scope(engine_any) as s:
            child = s.get(FedChild, cid)
            assert child is not None and child.state == "pending" and child.disclosure_record is None
    # Within the bounds: taken.
    status, answer = _release(hub, a, cid, {"notes": ["x" * 1000] * 50})
    assert status == 200, answer
