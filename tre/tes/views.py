"""A task as a TES client sees it, in the MINIMAL, BASIC or FULL view.

Only TES schema fields; tre's own facts go into ``tags`` (``tre.job_state``, ``tre.egress``)
and the task log's ``metadata``. What the job controls reaches a researcher only as tre lets
it through anywhere else: the log through the researcher screening (FULL view only), output
names through the name screening (a withheld name reads ``#<index>``, as in ``tre outputs``).
Outputs are never uploaded: the file logs' ``url`` is ``tre://jobs/<id>/outputs/<index>``,
where the airlock finds them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.access import sees_exact_run
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import PolicyUnavailable
from tre.jobs.service import LogScreener, visible_log
from tre.jobs.shown_run import shown_job_fields, shown_time
from tre.store.models import EgressRequest, Job, JobState, TesTask
from tre.tes.models import (
    TesExecutor,
    TesExecutorLog,
    TesInput,
    TesOutput,
    TesOutputFileLog,
    TesResources,
    TesTaskLog,
    TesTaskView,
    View,
)
from tre.tes.states import tes_state

AIRLOCK_NOTICE = (
    "outputs are not uploaded to their urls: they stay in tre and leave only through the "
    "airlock (tre egress request <task id> ...), after review"
)


@dataclass(frozen=True)
class ShownOutput:
    """One output of a job as this caller may know it: its index (egress_review.outputnames),
    its path, whether the name screening lets that path through to this caller, its size."""

    index: int
    path: str
    name_shown: bool
    size: int


# A task view lists at most this many output file logs; the rest are named by a tag and a
# system log line pointing at the paged outputs listing (`GET /api/v1/jobs/{id}/outputs`).
MAX_OUTPUT_FILE_LOGS = 1_000
OUTPUT_LOGS_CUT_TAG = "tre.output_file_logs"
OUTPUT_LOGS_CUT_NOTE = (
    "only the first {limit} output file logs are listed; GET /api/v1/jobs/{job}/outputs "
    "(tre outputs {job} --all) lists every output"
)

# The airlock's name screening, handed in by the API (the core never imports the airlock).
OutputLister = Callable[[Session, Settings, Principal, Job], list[ShownOutput]]


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def egress_states(session: Session, job_ids: list[str]) -> dict[str, str]:
    """The state of each job's latest egress request (one query for a page of tasks)."""
    latest: dict[str, str] = {}
    rows = session.execute(
        select(EgressRequest.job_id, EgressRequest.state)
        .where(EgressRequest.job_id.in_(job_ids))
        .order_by(EgressRequest.created_at, EgressRequest.id)
    )
    for job_id, state in rows:
        latest[job_id] = state  # later requests overwrite earlier ones
    return latest


def task_view(
    session: Session,
    settings: Settings,
    principal: Principal,
    job: Job,
    row: TesTask,
    view: View,
    screen: LogScreener,
    outputs: OutputLister,
    egress: dict[str, str] | None = None,
) -> TesTaskView:
    """``egress``: `egress_states` of a page of tasks, when the caller fetched them at once."""
    state = tes_state(job)
    if view == View.MINIMAL:
        return TesTaskView(id=job.id, state=state)
    full = view == View.FULL
    exact = sees_exact_run(session, principal, job.project_id)  # tre.jobs.shown_run
    inputs = [TesInput.model_validate(i) for i in row.inputs]
    if not full:
        inputs = [i.model_copy(update={"content": None}) for i in inputs]
    tags = {**(row.tags or {}), "tre.job_state": job.state, "tre.egress": _egress(session, job.id, egress)}
    logs, cut = _logs(session, settings, principal, job, row, full, screen, outputs, exact)
    if cut:
        tags[OUTPUT_LOGS_CUT_TAG] = OUTPUT_LOGS_CUT_NOTE.format(limit=MAX_OUTPUT_FILE_LOGS, job=job.id)
    return TesTaskView(
        id=job.id,
        state=state,
        name=row.name or None,
        description=row.description or None,
        inputs=inputs or None,
        outputs=[TesOutput.model_validate(o) for o in row.outputs] or None,
        resources=TesResources.model_validate(row.resources) if row.resources else None,
        executors=[TesExecutor.model_validate(e) for e in row.executors],
        volumes=list(row.volumes) or None,
        tags=tags,
        logs=logs,
        creation_time=_time(shown_time(job.created_at, exact=exact)),
    )


def _egress(session: Session, job_id: str, known: dict[str, str] | None) -> str:
    if known is None:
        known = egress_states(session, [job_id])
    return known.get(job_id, "none")


def _logs(
    session: Session,
    settings: Settings,
    principal: Principal,
    job: Job,
    row: TesTask,
    full: bool,
    screen: LogScreener,
    outputs: OutputLister,
    exact: bool,
) -> tuple[list[TesTaskLog] | None, bool]:
    """The task's log, and whether its output file logs were cut at `MAX_OUTPUT_FILE_LOGS`."""
    ended = JobState(job.state).terminal
    if job.started_at is None and not ended:
        return None, False
    # Coarsened unless ``exact`` (tre.jobs.shown_run): the exit code, reason and times are the job's numbers.
    run = shown_job_fields(
        {
            "exit_code": job.exit_code,
            "reason": job.reason,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        },
        exact=exact,
    )
    reason = run["reason"]
    system_logs = [f"tre job {job.state}" + (f": {reason}" if reason else ""), AIRLOCK_NOTICE]
    executor_logs: list[TesExecutorLog] = []
    if job.exit_code is not None:
        stdout = None
        if full:
            try:
                data, _ = visible_log(session, settings, principal, job, 0, screen=screen)
                stdout = data.decode("utf-8", errors="replace")
            except PolicyUnavailable as exc:
                system_logs.append(exc.detail)
        executor_logs.append(
            TesExecutorLog(
                start_time=_time(run["started_at"]),
                end_time=_time(run["finished_at"]),
                stdout=stdout,
                stderr="" if full else None,
                exit_code=run["exit_code"],
            )
        )
    metadata = {"tre.job_id": job.id, "tre.executor": job.executor, "tre.project": job.project_id}
    if job.code_hash:
        metadata["tre.code_hash"] = job.code_hash
    file_logs, cut = _output_logs(outputs(session, settings, principal, job), row) if ended else ([], False)
    if cut:
        system_logs.append(OUTPUT_LOGS_CUT_NOTE.format(limit=MAX_OUTPUT_FILE_LOGS, job=job.id))
    task_log = TesTaskLog(
        logs=executor_logs,
        metadata=metadata,
        start_time=_time(run["started_at"]),
        end_time=_time(run["finished_at"]),
        outputs=file_logs,
        system_logs=system_logs if full else None,
    )
    return [task_log], cut


def _output_logs(shown: list[ShownOutput], row: TesTask) -> tuple[list[TesOutputFileLog], bool]:
    """A file log for each recorded output the task declared: a FILE output by its declared
    path (chosen by the author, not the job), the files below a DIRECTORY output by their
    screened names. At most `MAX_OUTPUT_FILE_LOGS` of them (and whether some were left out):
    a job may record 100,000 outputs, and a page of 64 tasks listed every one of each in one
    answer, matched against every declared output (declared x recorded steps)."""
    logs: list[TesOutputFileLog] = []
    # Only names the caller may see: the author may declare any path, and a file log for a
    # withheld one would confirm a guessed name (a patient's) exists.
    visible = {out.path: out for out in shown if out.name_shown}
    for declared in row.outputs:
        path = posixpath.normpath(str(declared["path"]))
        rel = path[len("/output") :].lstrip("/")
        if declared.get("type", "FILE") == "FILE":
            out = visible.get(rel)
            if out is not None:
                logs.append(_file_log(row, out, path))
        else:
            for out in shown:
                if not out.name_shown:
                    # Name withheld: whether it lies below this folder is not said either.
                    if rel == "":
                        logs.append(_file_log(row, out, f"#{out.index}"))
                elif rel == "" or out.path.startswith(rel + "/"):
                    logs.append(_file_log(row, out, f"/output/{out.path}"))
                if len(logs) > MAX_OUTPUT_FILE_LOGS:
                    break
        if len(logs) > MAX_OUTPUT_FILE_LOGS:
            return logs[:MAX_OUTPUT_FILE_LOGS], True
    return logs, False


def _file_log(row: TesTask, out: ShownOutput, path: str) -> TesOutputFileLog:
    url = f"tre://jobs/{row.job_id}/outputs/{out.index}"
    return TesOutputFileLog(url=url, path=path, size_bytes=str(out.size))
