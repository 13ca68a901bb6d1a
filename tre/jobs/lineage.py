"""A job's inputs (earlier jobs' outputs it reads) and the datasets those outputs derive from.

Why lineage: a preprocessed volume is the patient's data in another shape. A job that reads
it must be allowed every dataset it came from, under the same rules as a dataset it names
itself, and whatever it writes must leave the airlock under those datasets' policies. So at
admission each input job is checked (same project, succeeded, outputs still on disk) and its
lineage collected: its own datasets plus, transitively, its own inputs' lineage, read from
the rows written when *it* was admitted, never recomputed from state that changes later.
The new job stores the union (`JobLineageDataset`); grants and policies are then checked
over its own datasets and that lineage together (`tre.jobs.admission`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tre.config import Settings
from tre.errors import Conflict, NotFound, Unprocessable
from tre.jobs.paths import output_dir
from tre.store.models import Job, JobInput, JobLineageDataset, JobOutput, JobState

# A job may read this many earlier jobs (the API bounds the list to the same number).
MAX_INPUT_JOBS = 16
# Where input job X's outputs appear in the job, and the variable that lists them.
INPUTS_ROOT = "/inputs"
INPUTS_ENV = "TRE_INPUTS"


def input_mount_path(job_id: str) -> str:
    return f"{INPUTS_ROOT}/{job_id}"


@dataclass
class Lineage:
    """What admission learned about a submission's inputs."""

    input_job_ids: list[str] = field(default_factory=list)
    # The datasets the inputs' outputs derive from, sorted, each once.
    dataset_ids: list[str] = field(default_factory=list)
    # The policies admission applied, name -> sha256 of the file's text: policies are files an
    # admin edits outside tre, so each admission's audit entry names the exact rules it used.
    policies: dict[str, str] = field(default_factory=dict)


def resolve_inputs(
    session: Session,
    settings: Settings,
    project_id: str,
    input_job_ids: list[str],
    resumed: str | None = None,
) -> Lineage:
    """Check each input job and collect the lineage; the first reason that applies refuses.

    The caller is already known to be a member of ``project_id``. A job of any other project
    is answered exactly like one that does not exist (404), so ids are not an oracle.

    ``resumed``: the ended job a resumed cohort carries on (`tre preprocess --resume`), an
    input too. A job that failed, timed out or was cancelled is exactly the one a cohort is
    resumed from, so it needs only to have ended: its series are verified by their hashes in
    the job (`tre.kernels.manifest`) before any is kept; for a plain input job, a partial
    output read as if whole would mislead, so only a succeeded one is read.
    """
    wanted = list(dict.fromkeys(input_job_ids))
    if len(wanted) != len(input_job_ids):
        raise Unprocessable("an input job is named twice", slug="duplicate-input-job")
    if resumed is not None and resumed not in wanted:
        wanted.append(resumed)
    if len(wanted) > MAX_INPUT_JOBS:
        raise Unprocessable(f"a job may read at most {MAX_INPUT_JOBS} input jobs", slug="too-many-input-jobs")
    datasets: set[str] = set()
    for job_id in wanted:
        job = session.get(Job, job_id)
        if job is None or job.project_id != project_id:
            raise NotFound(f"no job {job_id!r} in project {project_id!r}", slug="input-job-not-found")
        if job_id == resumed and not JobState(job.state).terminal:
            raise Conflict(
                f"job {job_id} is {job.state}; a job is resumed once it has ended (tre cancel it first)",
                slug="resumed-job-not-ended",
            )
        if job_id != resumed and job.state != JobState.succeeded.value:
            raise Conflict(
                f"input job {job_id} is {job.state}; only the outputs of a succeeded job can be read"
                " (a cohort that ended early is carried on with tre preprocess --resume)",
                slug="input-job-not-succeeded",
            )
        missing = missing_outputs(session, settings, job_id)
        if missing is not None:
            raise Conflict(f"the outputs of input job {job_id} {missing}", slug="input-outputs-gone")
        datasets.update(job.governing_dataset_ids)
    return Lineage(input_job_ids=wanted, dataset_ids=sorted(datasets))


def missing_outputs(session: Session, settings: Settings, job_id: str) -> str | None:
    """Why a finished job's recorded outputs cannot be read any more (None: they can).

    The recorded outputs (path, size) are what the job produced as far as the platform knows;
    a folder that lost one of them, or changed its size, was cleaned up or altered after the
    job ended, and a job reading it would read something no record describes."""
    rows = session.execute(select(JobOutput.path, JobOutput.size).where(JobOutput.job_id == job_id)).all()
    if not rows:
        return "are empty: the job recorded no output files"
    root = output_dir(settings, job_id)
    if not root.is_dir() or root.is_symlink():
        return "are no longer kept"
    for path, size in rows:
        try:
            st = os.lstat(Path(root, path))
        except OSError:
            return "are no longer kept (a recorded file is gone)"
        if st.st_size != size:
            return "were altered after the job ended (a recorded file changed size)"
    return None


def record_lineage(session: Session, job: Job, lineage: Lineage) -> None:
    """Write the job's inputs and lineage rows (once, at admission).

    The job's two collections are set to what was written, so the audit entries that name
    them (``job_facts``) cost no query: a submission is on the API's hot path."""
    inputs = [
        JobInput(job_id=job.id, input_job_id=input_id, position=i)
        for i, input_id in enumerate(lineage.input_job_ids)
    ]
    datasets = [JobLineageDataset(job_id=job.id, dataset_id=d) for d in lineage.dataset_ids] if inputs else []
    if inputs:
        session.add_all([*inputs, *datasets])
        session.flush()
    set_committed_value(job, "input_links", inputs)
    set_committed_value(job, "lineage_links", datasets)
