"""A researcher's view of a job's log: screened, judged from its start, within budgets.

The log is an output channel like any file in /output, only live: this module is the one
entry point through which a researcher reads it (`tre.jobs.service.visible_log` is handed
`researcher_log` by the API). Judging a log costs about 1-2 ms per KiB and a follower polls
twice a second, so screens and judgements are cached.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict

from sqlalchemy.orm import Session

from egress_review import checking, logbudget
from egress_review.logscreen import STATUS_ONLY_NOTICE, LogScreen, Screening, known_values
from tre.config import Settings
from tre.errors import PolicyUnavailable
from tre.jobs.service import read_log
from tre.policy import policies_for_datasets
from tre.store.models import Job, JobState


def job_log_screen(session: Session, settings: Settings, job: Job) -> tuple[LogScreen, int]:
    """The screen for this job's datasets' policies, and the project's daily budget (bytes).

    No policy, no log: fail closed with a reason."""
    datasets = checking.job_datasets(session, job)
    try:
        applied = policies_for_datasets(datasets, settings.resolved_policies_dir)
    except PolicyUnavailable as exc:
        raise PolicyUnavailable(f"the job's log is withheld: {exc}") from exc
    policies = [a.policy for a in applied]
    identifiers = frozenset(checking.identifiers_for(datasets, applied))
    key = (tuple(p.digest for p in policies), identifiers)
    with _SCREENINGS_LOCK:
        screen = _SCREENS.get(key)
    if screen is None:
        # Building the matchers over thousands of identifiers is the slow part: once per
        # (policies, identifiers), not once per poll.
        screen = LogScreen.for_policies(policies, set(identifiers))
        with _SCREENINGS_LOCK:
            _SCREENS[key] = screen
            while len(_SCREENS) > 16:
                _SCREENS.popitem(last=False)
    daily = min(p.job.researcher_log_project_daily_kib for p in policies) * 1024
    return screen, daily


def researcher_log(session: Session, settings: Settings, job: Job, offset: int) -> tuple[bytes, int]:
    """A researcher's view of the log from ``offset`` (`tre.jobs.service.LogScreener`).

    Judged from the start of the log whatever the offset, by the screening of the job's
    datasets' policies, and shown within the per-job and per-project daily budgets
    (egress_review.logbudget).

    Under the screening policies ``offset`` and the offset returned count lines of what the
    researcher is shown (`ResearcherView`), never bytes of the raw log: raw offsets told the
    raw log's size (live, while the job wrote; also under ``status_only`` and past the limits)
    and each withheld line's length, a channel no screening saw (redteam13).
    """
    # The state is read before the log: if the job had ended then, the file is complete.
    ended = JobState(job.state).terminal
    screen, daily_limit = job_log_screen(session, settings, job)
    if screen.visibility == "full":
        raw, next_offset, _ = read_log(settings, job.id, offset)
        return raw, next_offset
    if screen.visibility == "status_only":
        # The same answer whatever the job wrote, or whether it wrote anything: one line.
        return (STATUS_ONLY_NOTICE if offset == 0 else b""), max(offset, 1)
    known = known_values(job.id, job.input_job_ids, job.image, job.code_hash)
    screening = _screened(settings, job.id, screen, ended, known)
    view = ResearcherView(screening)
    start = view.raw_start(offset)
    allowed = logbudget.charge(session, job.id, job.project_id, screening, start, daily_limit)
    notice = b""
    if allowed.exhausted:
        notice = logbudget.daily_notice(daily_limit)
    elif screening.cut and allowed.shown_to >= screening.decided_to:
        notice = screen.limit_notice()
    return view.read(offset, allowed.shown_to, notice)


class ResearcherView:
    """The lines a researcher is shown of a judged log, addressed by their own offsets.

    The view is the judged lines' screened texts, up to what the budgets let through, then
    the notice that ends it (limit or daily budget) if any. A researcher's offset counts the
    view's lines (a notice is one), so it says only what they have already read. Lines, not
    bytes: a line shown before its neighbours arrived can be withheld once they do (labelled
    parts of an identifier are withheld together), which changes its text's length but never
    the number of lines before the next one, so a follower neither skips nor repeats a line.
    """

    def __init__(self, screening: Screening) -> None:
        self.lines = screening.lines

    def raw_start(self, offset: int) -> int:
        """The raw offset of view line ``offset`` (past every judged line: the raw end of the
        judged part, and one more), for the budget's in-order charging."""
        if offset < len(self.lines):
            return self.lines[max(offset, 0)].start
        return self.lines[-1].end + 1 if self.lines else 1 if offset else 0

    def read(self, offset: int, shown_to: int, notice: bytes) -> tuple[bytes, int]:
        """The shown lines (ending by raw ``shown_to``) from view line ``offset`` on, the
        notice after them, and the view line to read from next."""
        parts: list[bytes] = []
        count = 0
        for line in self.lines:
            if line.end > shown_to:
                break
            if count >= offset:
                parts.append(line.text.encode() + b"\n")
            count += 1
        if notice:
            if count >= offset:
                parts.append(notice)
            count += 1
        return b"".join(parts), max(offset, count)


# Judging a log costs about 1-2 ms per KiB, and a follower polls twice a second: the last
# judgements are kept per (job, log size, ended, screen), which a log that has not grown
# since the last poll (or is read again) reuses. Bounded by count and by the memory they
# hold: a judgement holds every judged line of its log (up to the policy's per-job limit,
# MiBs each), so 64 of them could hold hundreds of MiB of a server's memory.
_SCREENINGS: OrderedDict[tuple[object, ...], tuple[Screening, int]] = OrderedDict()
_SCREENS: OrderedDict[tuple[object, ...], LogScreen] = OrderedDict()
_SCREENINGS_LOCK = threading.Lock()
_SCREENINGS_HELD = [0]  # bytes the kept judgements hold (`footprint`), under the lock
SCREENING_CACHE = 64
SCREENING_CACHE_BYTES = 32 << 20
# What a judged line costs besides its text, at most (CPython 3.11, measured with
# tracemalloc: the ScreenedLine object, its attributes, its two ints and its list slot came
# to 60-180 bytes): the estimate errs high, so the budget is never exceeded.
_LINE_OVERHEAD = 180


def footprint(screening: Screening) -> int:
    """How many bytes of memory ``screening`` holds, at most (measured: 50-100 % of this)."""
    return 64 + sum(sys.getsizeof(line.text) + _LINE_OVERHEAD for line in screening.lines)


def screenings_held() -> int:
    """The bytes the kept judgements hold now (`SCREENING_CACHE_BYTES` at most)."""
    with _SCREENINGS_LOCK:
        return _SCREENINGS_HELD[0]


def _screened(
    settings: Settings, job_id: str, screen: LogScreen, ended: bool, known: frozenset[str] = frozenset()
) -> Screening:
    log, _, at_end = read_log(settings, job_id, 0, screen.limit_bytes + 1)
    final = ended and at_end
    # The screen object itself is part of the key: it is kept alive in _SCREENS (or by the
    # key), so its identity cannot be reused by another screen while the entry exists.
    key = (job_id, final, screen, known, hashlib.sha256(log).digest())
    with _SCREENINGS_LOCK:
        hit = _SCREENINGS.get(key)
        if hit is not None:
            _SCREENINGS.move_to_end(key)
            return hit[0]
    screening = screen.screen_log(log, final, known)
    size = footprint(screening)
    with _SCREENINGS_LOCK:
        if size > SCREENING_CACHE_BYTES or key in _SCREENINGS:
            return screening  # larger than the whole budget: judged again when asked again
        _SCREENINGS[key] = (screening, size)
        _SCREENINGS_HELD[0] += size
        while len(_SCREENINGS) > SCREENING_CACHE or _SCREENINGS_HELD[0] > SCREENING_CACHE_BYTES:
            _SCREENINGS_HELD[0] -= _SCREENINGS.popitem(last=False)[1][1]
    return screening
