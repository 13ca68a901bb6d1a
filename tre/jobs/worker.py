"""The worker: claims queued jobs, runs them on an executor, records how they ended.

Crash safety: a job is claimed with a conditional UPDATE (two workers never run one job),
its row carries the worker id and a heartbeat, and a starting worker looks for jobs still
marked running whose worker is gone. Those are reattached when the backend can (Kubernetes)
or ended as failed with the reason and whatever outputs exist recorded: never left running
forever, never silently dropped.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from tre import audit
from tre.audit import AuditEvent, record_event, record_events
from tre.audit.events import record_job_ended, record_job_started
from tre.audit.registrations import require_registered
from tre.audit.witnessing import witness_newest
from tre.code.archive import CodeLimits
from tre.code.store import CodeStore
from tre.config import Settings
from tre.errors import TreError, is_storage_full
from tre.executors import liveness, reasons
from tre.executors.base import DatasetMount, Executor, InputMount, JobResult, JobSpec, RunControl
from tre.executors.factory import make_executor
from tre.images.runtime import job_image
from tre.jobs import end_spool
from tre.jobs.fairness import fair_order
from tre.jobs.lineage import INPUTS_ENV, input_mount_path, missing_outputs
from tre.jobs.outputs import OutputScan, record_scanned, recording_limits, scan_output_tree
from tre.jobs.paths import log_path, output_dir
from tre.plural import count
from tre.registry import check_dataset_path
from tre.store.base import utcnow
from tre.store.db import DatabaseBusy, session_scope
from tre.store.models import Dataset, Job, JobState

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 300.0
# How often a worker looks for what dead workers' sandboxes left (besides at its start, done
# by the executor, and whenever it finds an orphaned job).
LEFTOVER_SWEEP_S = 600.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# The words of an orphaned job's reason (`Worker._fail_orphan`): the job did not fail, its
# worker did. The federation agent reruns such a child once (`lost_with_its_worker`).
WORKER_LOST = "stopped while the job was running"


def lost_with_its_worker(job: Job) -> bool:
    """Whether a failed job ended because its worker died (a crash, not the job's doing)."""
    return job.state == JobState.failed and job.exit_code is None and WORKER_LOST in (job.reason or "")


def process_gone(job: Job, hostname: str) -> bool:
    """Whether the worker recorded on a running job was a process on this host that ended."""
    host, _, rest = (job.worker_id or "").partition(":")
    pid = rest.partition(":")[0]
    return host == hostname and pid.isdigit() and not liveness.owner_alive(int(pid), None)


class HeartbeatWatch:
    """Whether another worker's heartbeat on a job has stopped, by this worker's monotonic clock.

    Why not compare the heartbeat's time with the wall clock: a wall clock that jumps (an NTP
    step, a virtual machine resumed, an admin's ``date -s``) made every live worker's
    heartbeat look an hour stale, or a dead worker's fresh for an hour, so a second worker
    ended live jobs as lost, or left dead ones running. A heartbeat is a value that a live
    worker changes every ``worker_heartbeat_s``; it is stale when this worker has seen the
    same value for ``worker_stale_after_s`` of its own monotonic time, whatever the clocks say.
    The cost: a worker that starts after a crash on another host ends that host's jobs one
    ``worker_stale_after_s`` later (a dead process on this host is seen at once).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[datetime | None, float]] = {}

    def quiet_for(self, job_id: str, heartbeat_at: datetime | None) -> float:
        """Seconds (monotonic) this job's heartbeat has been seen unchanged."""
        now = self._clock()
        seen = self._seen.get(job_id)
        if seen is None or seen[0] != heartbeat_at:
            self._seen[job_id] = (heartbeat_at, now)
            return 0.0
        return now - seen[1]

    def keep_only(self, job_ids: set[str]) -> None:
        """Forget jobs that are no longer running (the watch stays as small as the jobs)."""
        for job_id in [j for j in self._seen if j not in job_ids]:
            del self._seen[job_id]


# What a database that went away raises (a server stopped or failing over, a dropped
# connection, SQLite's lock held past the busy timeout or its disk full): worth a retry.
# `DatabaseBusy` is SQLite's write slot not had within the busy timeout (a long writer).
DB_AWAY = (OperationalError, InterfaceError, DatabaseBusy)


def _db_error_words(exc: BaseException) -> str:
    """The driver's first line, without the statement SQLAlchemy appends (admin log only)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0][:200] if text else type(orig).__name__


class Worker:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        executor: Executor | None = None,
        concurrency: int = 2,
        clock: Callable[[], float] = time.monotonic,
        periodic: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.executor = executor or make_executor(settings)
        self.worker_id = new_worker_id()
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tre-job")
        self._running: dict[str, Future[None]] = {}
        self._stop = threading.Event()
        self._clock = clock
        # Other periodic work of the control plane, run once per round (each rate-limits
        # itself): the composition roots pass the airlock's expiry sweep (egress_review.expiry).
        self._periodic = tuple(periodic)
        # None, not 0.0: a monotonic clock counts from boot, so on a machine up for less than
        # a period "0.0" would look recent and the first checkpoint would be skipped.
        self._last_checkpoint: float | None = None
        # The executor swept at its construction: the next periodic sweep is a period away.
        self._last_leftover_sweep: float | None = clock()

        # Executors call the heartbeat hook as often as they poll; the row is written at most
        # once per worker_heartbeat_s (monotonic seconds; absent = never written yet).
        self._last_beat: dict[str, float] = {}
        # Other workers' heartbeats as this worker saw them (`HeartbeatWatch`).
        self._heartbeats = HeartbeatWatch(clock)
        # When "database unreachable" was last logged per job (monotonic seconds).
        self._away_logged: dict[str, float] = {}
        # Jobs this worker still runs that another worker ended or took over meanwhile
        # (`_heartbeat`): stopped here, their end not recorded.
        self._lost_elsewhere: set[str] = set()
        # The key of each job this worker claimed or took over (`Job.end_key`): it seals the
        # end kept on disk while the database is away (`end_spool`); held nowhere else on disk.
        self._end_keys: dict[str, str] = {}
        audit.configure(engine, settings.keys_dir)

    # -- lifecycle -------------------------------------------------------------------------
    def serve_forever(self) -> None:
        log.info("worker %s started (executor %s)", self.worker_id, self.executor.name)
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - one bad round must not stop every later job
                    log.exception("worker %s: scheduling round failed", self.worker_id)
                self._stop.wait(self.settings.worker_poll_s)
        finally:
            self._pool.shutdown(wait=True)

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> None:
        """One scheduling round: write ends kept on disk, recover orphans, reap finished
        threads, start queued jobs."""
        self._replay_spooled_ends()
        self.recover_orphans()
        self._periodic_checkpoint()
        for hook in self._periodic:
            try:
                hook()
            except Exception:  # noqa: BLE001 - a failed sweep must not stop the jobs
                log.exception("worker %s: periodic task failed", self.worker_id)
        for job_id, fut in list(self._running.items()):
            if fut.done():
                del self._running[job_id]
                if exc := fut.exception():
                    log.error("job %s thread crashed: %s", job_id, exc)
        while len(self._running) < self.concurrency:
            claimed = self.claim_next()
            if claimed is None:
                break
            self._running[claimed] = self._pool.submit(self._run_claimed, claimed)

    def run_until_idle(self, timeout_s: float = 60.0) -> None:
        """Run every queued job to the end (tests, `tre demo`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.tick()
            if not self._running:
                with session_scope(self.engine) as s:
                    if s.scalar(select(Job.id).where(Job.state == JobState.queued.value).limit(1)) is None:
                        return
            time.sleep(0.1)
        raise TimeoutError("jobs still running after the timeout")

    def _periodic_checkpoint(self) -> None:
        """A fresh signed checkpoint at least every CHECKPOINT_EVERY_S, even when idle: a stale
        checkpoint is how an auditor notices a log being withheld."""
        now = self._clock()
        if self._last_checkpoint is not None and now - self._last_checkpoint < CHECKPOINT_EVERY_S:
            return
        self._last_checkpoint = now
        with session_scope(self.engine) as s:
            audit.checkpoint(s, max_age_s=CHECKPOINT_EVERY_S)
        witness_newest(self.engine, self.settings.keys_dir)  # configured witnesses cosign it

    # -- claiming and recovery --------------------------------------------------------------
    def claim_next(self) -> str | None:
        """Claim the next job, fairly across projects (docs/scheduling.md).

        Projects with queued jobs are taken in order of fewest jobs running now, then least
        recently served (the latest start of any of their jobs), then oldest waiting job; a
        project at ``worker_project_running_limit`` is skipped. Within a project, oldest
        first. So one project's long jobs cannot keep another's waiting: with a single slot,
        the next free slot goes to the project that was served longest ago.
        """
        with session_scope(self.engine) as s:
            for job_id in fair_order(s, self.executor.name, self.settings.worker_project_running_limit):
                now = utcnow()
                key = secrets.token_hex(32)
                claimed = cast(
                    CursorResult[Any],
                    s.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.state == JobState.queued.value)
                        .values(
                            state=JobState.running.value,
                            worker_id=self.worker_id,
                            started_at=now,
                            heartbeat_at=now,
                            end_key=key,
                        )
                    ),
                ).rowcount
                if claimed:
                    self._end_keys[job_id] = key
                    job = s.get(Job, job_id)
                    assert job is not None
                    record_job_started(s, job, {"worker": self.worker_id, "executor": job.executor})
                    return job_id
        return None

    def recover_orphans(self) -> None:
        with session_scope(self.engine) as s:
            running = list(
                s.scalars(
                    select(Job).where(Job.state == JobState.running.value, Job.executor == self.executor.name)
                )
            )
            # A job whose end waits on disk ended: it is written (`_replay_spooled_ends`), not
            # ended again as lost.
            waiting = end_spool.spooled_job_ids(self.settings)
            self._heartbeats.keep_only({j.id for j in running})
            orphans = [
                j.id
                for j in running
                if j.id not in self._running and j.id not in waiting and self._is_orphan(j)
            ]
        if orphans or self._leftover_sweep_due():
            # Before the orphans are ended: the outputs a dead worker's sandbox left mounted
            # are copied out first, so that the failed job records what it wrote, and its
            # mounts, image file and cgroup do not stay behind while this worker lives on.
            self._last_leftover_sweep = self._clock()
            try:
                self.executor.clean_leftovers()
            except Exception:  # noqa: BLE001 - a failed clean-up must not keep jobs running
                log.exception("worker %s: cleaning what dead workers left failed", self.worker_id)
        for job_id in orphans:
            if self.executor.supports_reattach:
                if self._take_over(job_id):
                    self._running[job_id] = self._pool.submit(self._run_claimed, job_id, True)
            else:
                self._fail_orphan(job_id)

    def _leftover_sweep_due(self) -> bool:
        """Every LEFTOVER_SWEEP_S: leftovers of a worker whose jobs another worker already
        ended (a crash mid clean-up) are found even when no job is orphaned now."""
        last = self._last_leftover_sweep
        return last is None or self._clock() - last >= LEFTOVER_SWEEP_S

    def _is_orphan(self, job: Job) -> bool:
        if job.worker_id == self.worker_id:
            # Ours, yet no thread of ours runs it (the caller checked): the thread ended
            # without recording it (the database away at its start). Ended, never forgotten.
            return True
        if process_gone(job, socket.gethostname()):
            return True
        return self._heartbeats.quiet_for(job.id, job.heartbeat_at) >= self.settings.worker_stale_after_s

    def _take_over(self, job_id: str) -> bool:
        with session_scope(self.engine) as s:
            job = s.get(Job, job_id)
            if job is None or job.state != JobState.running.value:
                return False
            previous = job.worker_id
            job.worker_id = self.worker_id
            job.heartbeat_at = utcnow()
            job.end_key = key = secrets.token_hex(32)
            record_event(
                s,
                actor="system",
                action="job.reattached",
                project_id=job.project_id,
                job_id=job_id,
                details={"previous_worker": previous, "worker": self.worker_id},
            )
        self._end_keys[job_id] = key  # committed: the row holds it too
        return True

    def _fail_orphan(self, job_id: str) -> None:
        with session_scope(self.engine) as s:
            job = s.get(Job, job_id)
            if job is None or job.state != JobState.running.value:
                return
            reason = (
                f"worker {job.worker_id} {WORKER_LOST}; the {job.executor} "
                "sandbox died with it. Outputs written before that are kept; resubmit to rerun."
            )
            self._finish(s, job, JobResult(JobState.failed, None, reason))

    # -- running ----------------------------------------------------------------------------
    def _inputs(self, session: Session, job: Job) -> list[InputMount]:
        """The input jobs' output folders, checked again now: admission saw them whole, but
        a job may wait in the queue while a folder is cleaned up or altered."""
        mounts = []
        for input_id in job.input_job_ids:
            missing = missing_outputs(session, self.settings, input_id)
            if missing is not None:
                raise TreError(f"the outputs of input job {input_id} {missing}")
            host = output_dir(self.settings, input_id)
            mounts.append(InputMount(input_id, host, input_mount_path(input_id)))
        return mounts

    def _spec(self, job: Job, datasets: list[Dataset], inputs: list[InputMount] | None = None) -> JobSpec:
        inputs = inputs or []
        out = output_dir(self.settings, job.id)
        out.mkdir(parents=True, exist_ok=True)
        mounts = [
            DatasetMount(
                dataset_id=d.id,
                host_path=Path(d.path),
                mount_path="/data" if len(datasets) == 1 else f"/data/{d.id}",
            )
            for d in datasets
        ]
        image = job_image(self.settings, job.image, unpack=self.executor.name == "local")
        return JobSpec(
            job_id=job.id,
            project_id=job.project_id,
            image=job.image,
            command=list(job.command),
            datasets=mounts,
            output_dir=out,
            log_path=log_path(self.settings, job.id),
            cpu=job.cpu,
            memory_mb=job.memory_mb,
            gpu=job.gpu,
            time_limit_s=job.time_limit_s,
            output_limit_mb=job.output_limit_mb,
            max_processes=job.max_processes,
            env={
                "TRE_JOB_ID": job.id,
                "TRE_PROJECT_ID": job.project_id,
                **({INPUTS_ENV: ":".join(m.mount_path for m in inputs)} if inputs else {}),
            },
            rootfs=image.rootfs,
            image_config=image.config,
            code_dir=CodeStore(self.settings).tree_path(job.code_hash) if job.code_hash else None,
            code_hash=job.code_hash,
            inputs=inputs,
        )

    def _run_claimed(self, job_id: str, reattach: bool = False) -> None:
        try:
            with session_scope(self.engine) as s:
                job = s.get(Job, job_id)
                assert job is not None
                datasets = [d for d in (s.get(Dataset, i) for i in job.dataset_ids) if d is not None]
                # Mounted only as registered: a path moved in the database would hand the job
                # another dataset's folder (`tre.audit.registrations`).
                require_registered(s, datasets)
                spec = self._spec(job, datasets, self._inputs(s, job))
                executor_ref = job.executor_ref
        except DB_AWAY as exc:
            # Nothing ran. The job stays this worker's and running, and with no thread of
            # ours on it, the next round ends it as lost (`_is_orphan`): never left running.
            log.warning(
                "worker %s: cannot read job %s to start it (%s)", self.worker_id, job_id, _db_error_words(exc)
            )
            return
        except TreError as exc:  # e.g. the job's image cannot be unpacked: end the job, not the thread
            with session_scope(self.engine) as s:
                job = s.get(Job, job_id)
                assert job is not None
                self._finish(s, job, JobResult(JobState.failed, None, f"refused to run: {exc}"))
            return
        control = RunControl(
            is_cancelled=lambda: self._cancel_requested(job_id),
            on_started=lambda ref: self._set_ref(job_id, ref),
            heartbeat=lambda: self._heartbeat(job_id),
        )
        try:
            # Datasets registered before paths were checked (or edited in the database) are
            # checked again: a job must never get the state directory or a system folder.
            for mount in spec.datasets:
                if mount.host_path is not None:
                    check_dataset_path(mount.host_path, self.settings.protected_paths)
            if spec.code_hash:  # unpacked at upload; made again (hash re-checked) if it went missing
                CodeStore(self.settings).ensure_tree(spec.code_hash, CodeLimits.ceiling())
            if reattach and executor_ref:
                result = self.executor.reattach(spec, executor_ref, control)
            else:
                result = self.executor.run(spec, control)
        except TreError as exc:
            result = JobResult(JobState.failed, None, f"refused to run: {exc}")
        except Exception as exc:  # noqa: BLE001 - any backend failure must end the job, not the worker
            # The exception's text may quote what the job wrote (a file name in an OSError, a
            # backend's message): it goes to the worker log, the reason names only a reference.
            ref = reasons.new_reference()
            log.exception("executor failed for job %s (ref: %s)", job_id, ref)
            # A full disk of the platform's own is said in fixed words: retrying will work.
            why = reasons.storage_full(ref) if is_storage_full(exc) else f"executor error (ref: {ref})"
            result = JobResult(JobState.failed, None, why)
        self._last_beat.pop(job_id, None)
        self._record_end(job_id, result)
        self._lost_elsewhere.discard(job_id)
        self._end_keys.pop(job_id, None)

    def _record_end(self, job_id: str, result: JobResult) -> None:
        """Record how a job ended. With the database away (a restart, a failover, SQLite's
        "disk is full", a server gone for good) the end is kept on local disk
        (`end_spool`) and the slot freed: the next round that reaches the database writes it,
        once, with the outputs (on disk too). Only if the state disk cannot take the spool
        file either does the thread wait, retrying both, rather than lose the result.

        Written only while the job is still this worker's and running: if the database was
        away for longer than ``worker_stale_after_s``, another worker may have ended it as
        lost meanwhile, and a job never ends twice.
        """
        delay = 0.5
        while True:
            try:
                with session_scope(self.engine) as s:
                    job = s.get(Job, job_id)
                    if job is None or job.state != JobState.running.value or job.worker_id != self.worker_id:
                        log.warning(
                            "job %s was ended elsewhere while this worker could not reach the database;"
                            " its result here (%s) is not recorded",
                            job_id,
                            result.state,
                        )
                        return
                    self._finish(s, job, result)
                return
            except DB_AWAY as exc:
                try:
                    key = self._end_keys.get(job_id)
                    where = end_spool.spool_end(self.settings, job_id, self.worker_id, result, key)
                except OSError as spool_exc:
                    log.warning(
                        "worker %s: cannot record the end of job %s (%s), nor keep it on disk (%s);"
                        " retrying in %.0f s",
                        self.worker_id,
                        job_id,
                        _db_error_words(exc),
                        spool_exc.strerror or type(spool_exc).__name__,
                        delay,
                    )
                    time.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                log.warning(
                    "worker %s: cannot record the end of job %s (%s); kept in %s, written when the"
                    " database answers (next worker round or tre admin doctor)",
                    self.worker_id,
                    job_id,
                    _db_error_words(exc),
                    where,
                )
                return

    def _replay_spooled_ends(self) -> None:
        """Write the ends kept on disk while the database was away (any worker's)."""
        # Raises while the database is away, like the rest of the round; the files stay.
        written = end_spool.replay(self.settings, self.engine, self._finish, DB_AWAY)
        if written:
            log.info(
                "worker %s: wrote %s kept on disk while the database was away",
                self.worker_id,
                count(written, "job end"),
            )

    def _finish(self, session: Session, job: Job, result: JobResult) -> None:
        finish_job(self.settings, session, job, result)

    def _cancel_requested(self, job_id: str) -> bool:
        """Asked by the executor as it polls. While the database is away the answer is "no"
        (asked again at the next poll): an outage must not stop every running job. A job
        another worker ended as lost (`_heartbeat`) is stopped here; one it took over
        (Kubernetes, Docker: it follows the same backend job now) is left to it, and only
        its end not recorded here."""
        if job_id in self._lost_elsewhere and not self.executor.supports_reattach:
            return True
        try:
            with session_scope(self.engine, read_only=True) as s:
                return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
        except DB_AWAY as exc:
            self._database_away(job_id, exc)
            return False

    def _set_ref(self, job_id: str, ref: str) -> None:
        """Store the backend's reference of a started job (what a later worker reattaches
        by), retried while the database is away for up to ``worker_stale_after_s``."""
        deadline = time.monotonic() + self.settings.worker_stale_after_s
        while True:
            try:
                with session_scope(self.engine) as s:
                    stored = {"executor_ref": ref, "heartbeat_at": utcnow()}
                    s.execute(update(Job).where(Job.id == job_id).values(**stored))
                return
            except DB_AWAY as exc:
                self._database_away(job_id, exc)
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _database_away(self, job_id: str, exc: BaseException) -> None:
        """One log line per job and outage minute for the admin (the job goes on)."""
        now = time.monotonic()
        if now - self._away_logged.get(job_id, -60.0) >= 60.0:
            self._away_logged[job_id] = now
            log.warning(
                "worker %s: database unreachable while job %s runs (%s); the job goes on",
                self.worker_id,
                job_id,
                _db_error_words(exc),
            )

    def _heartbeat(self, job_id: str) -> None:
        now = time.monotonic()
        last = self._last_beat.get(job_id)
        if last is not None and now - last < self.settings.worker_heartbeat_s:
            return
        self._last_beat[job_id] = now
        try:
            with session_scope(self.engine) as s:
                beat = s.execute(
                    update(Job)
                    .where(
                        Job.id == job_id, Job.worker_id == self.worker_id, Job.state == JobState.running.value
                    )
                    .values(heartbeat_at=utcnow())
                )
                ours = cast(CursorResult[Any], beat).rowcount != 0
        except DB_AWAY as exc:  # the next beat tries again; the job goes on
            self._database_away(job_id, exc)
            return
        if not ours and job_id not in self._lost_elsewhere:
            # This worker was not heard from for longer than TRE_WORKER_STALE_AFTER_S (its
            # host suspended and resumed, a network split): another worker ended the job as
            # lost (a local sandbox: stopped here, the executor polls `_cancel_requested`,
            # not left running research code on data for a job the record calls ended) or
            # took it over (a backend job it now follows: left to it). Either way its end is
            # not recorded here (`_record_end`).
            self._lost_elsewhere.add(job_id)
            log.warning(
                "worker %s: job %s was ended or taken over by another worker while this one was not"
                " heard from (a host suspended, a network split); %s",
                self.worker_id,
                job_id,
                "its end is left to that worker" if self.executor.supports_reattach else "stopping it here",
            )


def finish_job(settings: Settings, session: Session, job: Job, result: JobResult) -> None:
    """Write how a job ended: its outputs scanned and recorded, its state, the audit."""
    # The output tree was shaped by research code: whatever it holds, the job must end
    # with a state and the worker must keep running (a crash here left the job "running"
    # for ever and made every restarted worker crash on it again).
    try:
        scan = scan_output_tree(output_dir(settings, job.id), *recording_limits(session, settings, job))
    except Exception as exc:  # noqa: BLE001 - fail closed: no outputs, job failed
        # As above: the error may quote a name from the job's output tree.
        ref = reasons.new_reference()
        log.exception("cannot record the outputs of job %s (ref: %s)", job.id, ref)
        scan = OutputScan()
        unrecorded = (
            f"{result.reason}; its outputs could not be recorded (ref: {ref}), so none can be released"
        )
        why = reasons.storage_full(ref) if is_storage_full(exc) else unrecorded
        result = JobResult(JobState.failed, result.exit_code, why)
    if scan.skipped:
        result = JobResult(
            result.state,
            result.exit_code,
            # Fixed words: how many the job left unrecordable is a number it chose (the
            # count is in the worker log, from `scan_output_tree`, for staff).
            f"{result.reason}; some output files were not recorded and cannot be released "
            "(names with control characters, not UTF-8, not in NFC form, with leading or trailing "
            "spaces or too long, nested too deep, or too many files)",
        )
    outputs = record_scanned(session, job.id, scan)
    job.state = result.state
    job.exit_code = result.exit_code
    job.reason = result.reason
    job.finished_at = utcnow()
    # One batch: a cohort job records tens of thousands of files, and one append per file
    # (its own lock, INSERT and signed checkpoint) cost ~3 ms each, minutes per job.
    record_events(
        session,
        (
            AuditEvent(
                "system",
                "job.output_recorded",
                job.project_id,
                None,
                job.id,
                {"path": out.path, "size": out.size, "sha256": out.sha256},
            )
            for out in outputs
        ),
    )
    record_job_ended(
        session,
        job,
        {
            "state": result.state,
            "exit_code": result.exit_code,
            "reason": result.reason,
            "outputs": len(outputs),
        },
    )
