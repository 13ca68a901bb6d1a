"""The order in which queued jobs are offered to a worker: fair across projects.

First come, first served let one project's long jobs starve another's: a trivial job waited
behind every job queued before it. The order here (see docs/scheduling.md):

1. projects with fewer jobs running now come first (fair share of the running slots);
2. then the project served least recently (the latest start of any of its jobs; never
   served counts as longest ago): round robin between equally busy projects;
3. then the project whose oldest queued job has waited longest;

and a project already running ``running_limit`` jobs (when non-zero) gets no more until one
ends. Within a project jobs start oldest first. All of it is read from the jobs table, so
several workers share one notion of fairness without any state of their own.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tre.store.models import Job, JobState

# Queued jobs looked at per round (oldest first); enough to see every waiting project.
WINDOW = 1000
# Claim attempts per project per round (a lost race moves on to the next job).
PER_PROJECT = 3
_NEVER = datetime.min.replace(tzinfo=UTC)


def fair_order(session: Session, executor: str, running_limit: int = 0) -> list[str]:
    """Ids of queued jobs of ``executor`` in the order a worker should try to claim them."""
    queued = session.execute(
        select(Job.id, Job.project_id, Job.created_at)
        .where(Job.state == JobState.queued.value, Job.executor == executor)
        .order_by(Job.created_at, Job.id)
        .limit(WINDOW)
    ).all()
    if not queued:
        return []
    by_project: dict[str, list[str]] = defaultdict(list)
    oldest: dict[str, datetime] = {}
    for job_id, project_id, created_at in queued:
        by_project[project_id].append(job_id)
        oldest.setdefault(project_id, created_at)
    projects = list(by_project)
    running = dict(
        session.execute(
            select(Job.project_id, func.count())
            .where(Job.state == JobState.running.value, Job.project_id.in_(projects))
            .group_by(Job.project_id)
        ).all()
    )
    served = dict(
        session.execute(
            select(Job.project_id, func.max(Job.started_at))
            .where(Job.project_id.in_(projects), Job.started_at.is_not(None))
            .group_by(Job.project_id)
        ).all()
    )

    def key(project: str) -> tuple[int, datetime, datetime]:
        return (int(running.get(project, 0)), _aware(served.get(project)), _aware(oldest[project]))

    order: list[str] = []
    for project in sorted(projects, key=key):
        if running_limit and running.get(project, 0) >= running_limit:
            continue
        order.extend(by_project[project][:PER_PROJECT])
    return order


def _aware(value: datetime | str | None) -> datetime:
    """Timestamps compare as aware UTC (an aggregate may come back as text or naive)."""
    if value is None:
        return _NEVER
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
