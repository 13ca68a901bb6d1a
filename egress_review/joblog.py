"""A researcher's view of a job's log: screened, judged from its start, within budgets.

The log is an output channel like any file in /output, only live: this module is the one
entry point through which a researcher reads it (`tre.jobs.service.visible_log` is handed
`researcher_log` by the API). Judging a log costs about 1-2 ms per KiB and a follower polls
twice a second, so screens and judgements are cached.
"""

from __future__ import annotations

import hashlib
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

    Under the screening policies ``offset`` and the offset returned count bytes of what the
    researcher is shown (`ResearcherView`), never of the raw log: raw offsets told the raw
    log's size (live, while the job wrote; also under ``status_only`` and past the limits)
    and each withheld line's length, a channel no screening saw (redteam13).
    """
    # The state is read before the log: if the job had ended then, the file is complete.
    ended = JobState(job.state).terminal
    screen, daily_limit = job_log_screen(session, settings, job)
    if screen.visibility == "full":
        raw, next_offset, _ = read_log(settings, job.id, offset)
        return raw, next_offset
    if screen.visibility == "status_only":
        # The same answer whatever the job wrote, or whether it wrote anything.
        return (STATUS_ONLY_NOTICE if offset == 0 else b""), max(offset, len(STATUS_ONLY_NOTICE))
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
    """The bytes a researcher is shown of a judged log, addressed by their own offsets.

    The view is the judged lines' screened texts, each with its newline, up to what the
    budgets let through, then the notice that ends it (limit or daily budget) if any: an
    offset into it says only what the researcher has already read.
    """

    def __init__(self, screening: Screening) -> None:
        self.lines = screening.lines
        self.starts: list[int] = []  # each judged line's start in the view
        at = 0
        for line in self.lines:
            self.starts.append(at)
            at += len(line.text.encode()) + 1

    def raw_start(self, offset: int) -> int:
        """The raw offset of the first judged line at or after view ``offset`` (past every
        judged line: the raw end of the judged part), for the budget's in-order charging."""
        for line, start in zip(self.lines, self.starts, strict=True):
            if start >= offset:
                return line.start
        return self.lines[-1].end + 1 if self.lines else 1 if offset else 0

    def read(self, offset: int, shown_to: int, notice: bytes) -> tuple[bytes, int]:
        """The shown lines (ending by raw ``shown_to``) that start at or after view ``offset``,
        the notice after them, and the view offset to read from next."""
        parts: list[bytes] = []
        at = 0
        for line, start in zip(self.lines, self.starts, strict=True):
            if line.end > shown_to:
                break
            text = line.text.encode() + b"\n"
            if start >= offset:
                parts.append(text)
            at = start + len(text)
        if notice:
            if at >= offset:
                parts.append(notice)
            at += len(notice)
        return b"".join(parts), max(offset, at)


# Judging a log costs about 1-2 ms per KiB, and a follower polls twice a second: the last
# judgements are kept per (job, log size, ended, screen), which a log that has not grown
# since the last poll (or is read again) reuses.
_SCREENINGS: OrderedDict[tuple[object, ...], Screening] = OrderedDict()
_SCREENS: OrderedDict[tuple[object, ...], LogScreen] = OrderedDict()
_SCREENINGS_LOCK = threading.Lock()
SCREENING_CACHE = 64


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
            return hit
    screening = screen.screen_log(log, final, known)
    with _SCREENINGS_LOCK:
        _SCREENINGS[key] = screening
        while len(_SCREENINGS) > SCREENING_CACHE:
            _SCREENINGS.popitem(last=False)
    return screening
