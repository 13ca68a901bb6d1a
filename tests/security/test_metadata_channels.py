"""What a job can say to a researcher before the DAC approves, outside the log (redteam9).

Every field a researcher reads about a job and its outputs before approval is either fixed
vocabulary, screened, rounded, capped or withheld (SECURITY.md, "covert channels"). These
tests plant a message in the fields the job chooses as numbers: the exact sizes of its output
files, and the small counts of a table the checks block, and read it back the way a
researcher would (the API, the requester's view of the check results).
"""

from __future__ import annotations

import json
from pathlib import Path

from egress_review import checking
from egress_review.checks import CheckContext, run_checks
from tests.worlds import WorldFactory
from tre.jobs.shown_size import rounded_size
from tre.policy import load_policy
from tre.store.db import session_scope

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SECRET = b"HOSP-77"  # seven bytes the job wants out, one per file, as sizes 1100 + byte


def test_rounded_sizes_are_never_smaller_at_most_a_quarter_larger_and_few() -> None:
    for size in [*range(0, 5000), 2**20 - 1, 2**20 + 1, 10**9 + 7]:
        shown = rounded_size(size)
        assert size <= shown <= size + size // 4 + 1, size
    # about 7 bits a file: 4 values per power of two
    assert len({rounded_size(n) for n in range(1024, 1 << 20)}) == 41  # 1024 up to 2**20 itself


def test_a_message_in_output_sizes_does_not_reach_the_researcher(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    outputs = {f"part-{i}.bin": b"\0" * (1100 + byte) for i, byte in enumerate(SECRET)}
    with session_scope(engine) as s:
        job_id = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], outputs)
    alice, audrey = world.headers["alice"], world.headers["audrey"]
    staff = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=audrey).json()
    assert sorted(o["size"] for o in staff) == sorted(1100 + b for b in SECRET)
    assert not any(o["size_rounded"] for o in staff)
    mine = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=alice).json()
    assert {(o["size"], o["size_rounded"]) for o in mine} == {(1280, True)}

    # the egress request's view, before review, rounds them too
    r = app_client.post(
        "/api/v1/egress/requests",
        headers=alice,
        json={"job_id": job_id, "files": [f"#{o['index']}" for o in mine], "justification": "parts"},
    )
    assert r.status_code == 201, r.text
    assert {f["size"] for f in r.json()["files"]} == {1280}
    request_id = r.json()["id"]
    seen = app_client.get(f"/api/v1/egress/requests/{request_id}", headers=alice).json()
    assert {(f["size"], f["size_rounded"]) for f in seen["files"]} == {(1280, True)}
    reviewer = app_client.get(f"/api/v1/egress/requests/{request_id}", headers=world.headers["dana"]).json()
    assert sorted(f["size"] for f in reviewer["files"]) == sorted(1100 + b for b in SECRET)
    # bytes of no allowed type: blocked by the checks, so decided, with a disclosure record
    # that released nothing and must not give the sizes back exactly
    assert seen["state"] == "blocked", seen["state"]
    record = app_client.get(f"/api/v1/egress/requests/{request_id}/disclosure", headers=alice).json()
    assert {(f["size"], f["size_rounded"]) for f in record["files"]} == {(1280, True)}


def test_a_blocked_tables_counts_and_labels_stay_with_the_reviewers(tmp_path: Path) -> None:
    """20 small counts, each a byte of the message, with free-text labels: blocked, and
    neither the counts nor the labels are in what the requester sees of the results."""
    rows = [f"note{i}x,{(b % 9) + 1}" for i, b in enumerate(b"DOE JANE 1962-03-15!")]
    table = tmp_path / "counts.csv"
    table.write_text("group,n\n" + "\n".join(rows) + "\n")
    policy = load_policy("default", POLICIES)
    context = CheckContext(identifiers=[], file_count=1, total_size=0)
    results = run_checks(table, "counts.csv", policy, context)
    threshold = next(r for r in results if r.check == "sdc:threshold")
    assert threshold.outcome == "block"
    shown = json.dumps(checking.for_requester([r.model_dump() for r in results]))
    assert "note" not in shown and '"value"' not in shown
    assert "note3x" in json.dumps(threshold.evidence["reviewer_only"])  # the reviewers see them
