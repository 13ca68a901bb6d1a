"""Admission control: every reason a job may not run, checked before it is queued.

Order matters for the message a researcher sees: membership first (don't leak which
datasets exist to outsiders), then grants, then image policy, then the image's approval for
the project (ingress review), then quota.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tre.access import is_member
from tre.code.service import check_job_code
from tre.config import Settings
from tre.errors import AdmissionDenied, NotFound
from tre.images.catalog import require_approved
from tre.policy import policies_for_datasets
from tre.registry import get_dataset, grant_status
from tre.store.models import Job, JobState, Project


@dataclass
class JobRequest:
    project_id: str
    image: str
    command: list[str]
    dataset_ids: list[str] = field(default_factory=list)
    cpu: float = 1.0
    memory_mb: int = 1024
    gpu: int = 0
    time_limit_s: int = 600
    output_limit_mb: int = 256
    code_hash: str | None = None


def admit(session: Session, settings: Settings, user_id: str, req: JobRequest) -> Project:
    project = session.get(Project, req.project_id)
    if project is None or not is_member(session, req.project_id, user_id):
        # Same answer for "no such project" and "not yours": no probing of project names.
        raise AdmissionDenied(f"you are not a member of project {req.project_id!r}")
    check_command(req.command)
    for dataset_id in req.dataset_ids:
        try:
            get_dataset(session, dataset_id)
        except NotFound as exc:
            raise AdmissionDenied(_no_access(req.project_id, dataset_id)) from exc
        status = grant_status(session, req.project_id, dataset_id)
        if status == "none":
            # The same words as for a dataset that does not exist: no probing of dataset names.
            raise AdmissionDenied(_no_access(req.project_id, dataset_id))
        if status != "active":
            why = {
                "expired": "has only an expired access grant for",
                "revoked": "had its access grant revoked for",
            }[status]
            raise AdmissionDenied(f"project {req.project_id!r} {why} dataset {dataset_id!r}")
    datasets = [get_dataset(session, d) for d in req.dataset_ids]
    for applied in policies_for_datasets(datasets, settings.resolved_policies_dir):
        if not applied.policy.job.image_allowed(req.image):
            raise AdmissionDenied(f"image {req.image!r} is not on the allowlist of policy {applied.name!r}")
    # Ingress review: an admin approved exactly this image for this project (tre.images).
    require_approved(session, req.project_id, req.image)
    _check_quota(session, project, req)
    check_job_code(session, project, req.code_hash)
    return project


def _no_access(project_id: str, dataset_id: str) -> str:
    return f"project {project_id!r} has no access to dataset {dataset_id!r}"


# What execve and the executors accept (MAX_ARG_STRLEN is 128 KiB per argument).
MAX_COMMAND_ARGS = 4096
MAX_COMMAND_ARG_CHARS = 65_536
MAX_COMMAND_CHARS = 256 * 1024


def check_command(command: list[str]) -> None:
    """Refuse, with the reason, a command no executor can start: the API bounds its size too,
    but admission is the one place every submission passes (the CLI's demo included), and an
    empty program name used to be queued and then crash the executor."""
    if not command:
        raise AdmissionDenied("the job has no command")
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise AdmissionDenied("the command must be a list of strings")
    if not command[0].strip():
        raise AdmissionDenied("the command's program (its first element) is empty")
    if command[0] != command[0].strip():
        raise AdmissionDenied("the command's program must not start or end with white space")
    if any("\x00" in a for a in command):
        raise AdmissionDenied("the command must not contain NUL characters")
    if len(command) > MAX_COMMAND_ARGS:
        raise AdmissionDenied(f"the command has more than {MAX_COMMAND_ARGS} arguments")
    if any(len(a) > MAX_COMMAND_ARG_CHARS for a in command):
        raise AdmissionDenied(f"a command argument is longer than {MAX_COMMAND_ARG_CHARS} characters")
    if sum(len(a) for a in command) > MAX_COMMAND_CHARS:
        raise AdmissionDenied(f"the command is longer than {MAX_COMMAND_CHARS} characters in all")


def _check_quota(session: Session, project: Project, req: JobRequest) -> None:
    limits = [
        ("cpu", req.cpu, project.max_cpu, ""),
        ("memory", req.memory_mb, project.max_memory_mb, " MiB"),
        ("gpu", req.gpu, project.max_gpu, ""),
        ("time limit", req.time_limit_s, project.max_time_s, " s"),
        ("output limit", req.output_limit_mb, project.max_output_mb, " MiB"),
    ]
    for name, asked, allowed, unit in limits:
        if asked < 0 or (name != "gpu" and asked <= 0):
            raise AdmissionDenied(f"{name} must be positive (asked {asked}{unit})")
        if asked > allowed:
            raise AdmissionDenied(
                f"{name} {asked}{unit} is over project {project.id!r} quota of {allowed}{unit}"
            )
    active = (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.project_id == project.id, Job.state.in_([JobState.queued.value, JobState.running.value])
            )
        )
        or 0
    )
    if active >= project.max_concurrent_jobs:
        raise AdmissionDenied(
            f"project {project.id!r} already has {active} queued or running jobs "
            f"(quota {project.max_concurrent_jobs})"
        )
