"""The log screen's kept judgements are bounded by the memory they hold, not only by count.

Before, the last 64 judgements were kept whatever their size: each holds every judged line of
its log (up to the policy's per-job limit), so a server following many long logs held
hundreds of MiB. Measured with tracemalloc (what Python really holds), not by the cache's own
estimate: the budget is lowered to 1 MiB and 24 logs of 40 KiB are judged (~6 MiB of lines).
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from egress_review import joblog
from egress_review.logscreen import LogScreen
from tre.config import Settings
from tre.jobs.paths import log_path
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
BUDGET = 1 << 20


def test_kept_judgements_hold_at_most_their_byte_budget(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(joblog, "_SCREENINGS", type(joblog._SCREENINGS)())
    monkeypatch.setattr(joblog, "_SCREENINGS_HELD", [0], raising=False)
    monkeypatch.setattr(joblog, "SCREENING_CACHE_BYTES", BUDGET, raising=False)
    screen = LogScreen.for_policies([load_policy("default", REPO / "policies")], set())
    jobs = [f"job{i:02d}" for i in range(24)]
    for job_id in jobs:
        path = log_path(settings, job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            b"".join(b"step %05d of the analysis of %s done\n" % (n, job_id.encode()) for n in range(1000))
        )
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for job_id in jobs:
            screening = joblog._screened(settings, job_id, screen, ended=True)
            assert len(screening.lines) == 1000
        del screening
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2 * BUDGET, f"{held / 2**20:.1f} MiB held for a {BUDGET / 2**20:.0f} MiB budget"
    assert 0 < joblog.screenings_held() <= BUDGET
    # The newest judgement is still kept (reused, not judged again).
    assert joblog._screened(settings, jobs[-1], screen, ended=True) is joblog._screened(
        settings, jobs[-1], screen, ended=True
    )
