"""One factory for the populated TREs the tests need (no tests here).

Users, projects, memberships, datasets and grants go through `tre.registry`, so test worlds
get the same validation and audit records as the API gives; only what the worker would leave
behind (a finished job and its recorded outputs) is written directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre import committees, registry
from tre.config import Settings
from tre.images import catalog
from tre.store.base import utcnow
from tre.store.models import Job, JobOutput, UserRole

REPO = Path(__file__).resolve().parent.parent
IMAGE = "registry.tre.local/tre-job-cpu@sha256:" + "ab" * 32
ADMIN = "root"


class WorldFactory:
    def __init__(self, session: Session, actor: str = ADMIN) -> None:
        self.session = session
        self.actor = actor

    def users(self, roles_by_user: Mapping[str, Iterable[str]]) -> None:
        for user_id, roles in roles_by_user.items():
            registry.create_user(self.session, "test", user_id, list(roles), display_name=user_id.title())

    def project(
        self, project_id: str, name: str, members: Iterable[str] = (), quota: dict[str, Any] | None = None
    ) -> None:
        registry.create_project(self.session, self.actor, project_id, name, quota=quota or {})
        for user_id in members:
            registry.add_member(self.session, self.actor, project_id, user_id)

    def dataset(
        self,
        dataset_id: str,
        folder: Path,
        name: str = "",
        policy: str = "default",
        protected: Iterable[Path] = (),
        committee: Iterable[str] | None = None,
    ) -> None:
        """Register a dataset and seat its DAC committee (`tre.committees`): ``committee``, or
        by default every user holding the dac role at this point (the test worlds' DAC
        reviewed every dataset before committees were per dataset; tests of committees name
        them)."""
        registry.register_dataset(
            self.session,
            self.actor,
            dataset_id,
            name or dataset_id,
            folder,
            policy=policy,
            protected=protected,
        )
        self.committee(dataset_id, committee)

    def committee(self, dataset_id: str, members: Iterable[str] | None = None) -> None:
        if members is None:
            members = self.session.scalars(select(UserRole.user_id).where(UserRole.role == "dac")).all()
        for user_id in members:
            committees.assign(self.session, self.actor, dataset_id, user_id, REPO / "policies")

    def grant(self, project_id: str, dataset_id: str, days: int = 30) -> str:
        grant = registry.grant_access(
            self.session, self.actor, project_id, dataset_id, expires_at=utcnow() + timedelta(days=days)
        )
        return grant.id

    def approve_image(self, project_id: str, reference: str = IMAGE) -> None:
        """Ingress review, as an admin does it: the (registry-hosted, hence external) job image
        may run in the project."""
        catalog.approve(self.session, Settings(), self.actor, reference, project_id, external=True)

    def finished_job(
        self,
        settings: Settings,
        project_id: str,
        submitted_by: str,
        dataset_ids: list[str],
        outputs: Mapping[str, bytes],
        state: str = "succeeded",
    ) -> str:
        """A job as the worker leaves it: its row, its files under the jobs folder, their hashes."""
        now = utcnow()
        job = Job(
            project_id=project_id,
            submitted_by=submitted_by,
            image="registry/x@sha256:" + "0" * 64,
            command=["run"],
            dataset_ids=dataset_ids,
            state=state,
            exit_code=0,
            started_at=now,
            finished_at=now,
        )
        self.session.add(job)
        self.session.flush()
        for rel, data in outputs.items():
            path = settings.jobs_dir / job.id / "output" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.session.add(
                JobOutput(job_id=job.id, path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            )
        self.session.flush()
        return job.id


def job_body(**overrides: object) -> dict[str, object]:
    """A job submission the core world admits (project p1, dataset ct1)."""
    body: dict[str, object] = {
        "project_id": "p1",
        "image": IMAGE,
        "command": ["python3", "-c", "print('hi')"],
        "dataset_ids": ["ct1"],
        "cpu": 1,
        "memory_mb": 512,
        "time_limit_s": 30,
    }
    body.update(overrides)
    return body
