"""The server-side budget of screened log bytes researchers may see.

Screening narrows what a job can print out but cannot make the log a closed channel: short
facts on ordinary-looking lines pass. So the amount is bounded too, in the dataset's policy:
per job (`researcher_log_limit_kib`: only the log's first part is ever screened and shown)
and per project per UTC day (`researcher_log_project_daily_kib`, counted here).

A line is charged once, when it is first shown: re-reading a log costs nothing. Lines are
charged in order from the start of the log, so a reader cannot skip ahead to make earlier
lines free later; a read that starts beyond what was charged gets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from egress_review.logscreen import Screening
from tre.store.base import utcnow
from tre.store.models import LogBudgetDay, LogReveal


@dataclass(frozen=True)
class Allowance:
    # Researchers may see the judged lines that end by this raw offset.
    shown_to: int
    # The project's budget for today ran out before every judged line could be shown.
    exhausted: bool


def charge(
    session: Session, job_id: str, project_id: str, screening: Screening, offset: int, daily_limit_bytes: int
) -> Allowance:
    """Charge the lines a read from ``offset`` would show for the first time; return how far
    the reader may see."""
    reveal = session.get(LogReveal, job_id, with_for_update=True)
    if reveal is None:
        reveal = LogReveal(job_id=job_id, revealed_to=0, shown_bytes=0)
        session.add(reveal)
    if offset > reveal.revealed_to:
        # Skipping ahead is allowed, but shows nothing that was not charged in order.
        return Allowance(reveal.revealed_to, False)
    new = [line for line in screening.lines if line.start >= reveal.revealed_to]
    if not new:
        return Allowance(reveal.revealed_to, False)
    day = utcnow().date().isoformat()
    spent = session.get(LogBudgetDay, (project_id, day), with_for_update=True)
    if spent is None:
        spent = LogBudgetDay(project_id=project_id, day=day, shown_bytes=0)
        session.add(spent)
    exhausted = False
    for line in new:
        cost = len(line.text.encode()) + 1
        if spent.shown_bytes + cost > daily_limit_bytes:
            exhausted = True
            break
        spent.shown_bytes += cost
        reveal.shown_bytes += cost
        reveal.revealed_to = line.end
    session.flush()
    return Allowance(reveal.revealed_to, exhausted)


def daily_notice(limit_bytes: int) -> bytes:
    return (
        f"[tre] the project's daily budget of screened log ({limit_bytes // 1024} KiB) is spent; "
        "the rest of this log is withheld from researchers today (admins and auditors can read it)\n"
    ).encode()
