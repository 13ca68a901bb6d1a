"""`tre admin doctor`: the state of a control-plane host an operator needs after a crash, a
full disk or a database outage, each named with what to do.

Read-only on purpose: it reports, the worker repairs (`Worker.recover_orphans`, the local
executor's `clean_leftovers`). A doctor that also cleaned could race a starting worker; one
that only looks is safe to run at any time, from cron or a monitoring probe (exit 1 when a
check fails). One exception, safe to race: job ends a worker kept on disk while the database
was away (`tre.jobs.end_spool`) are written once it answers, by the doctor as by any worker
(each under a row lock, only while the job is still running under the worker that kept it),
so a host whose worker is gone does not leave its jobs "running". The same for refusal
entries a server kept on disk when the store could not take them (`tre.audit.refusal_spool`):
written now, each batch claimed first, so a running server never writes it too.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select, text

from tre import plural
from tre.config import Settings

OK, WARN, FAIL = "ok", "warn", "fail"
# Below this much free space (or share of the file system) writes start to fail: a job's
# outputs, the audit log, the database. Fixed, not a setting: it only words the report.
LOW_FREE_BYTES = 1 << 30
LOW_FREE_SHARE = 0.05
FULL_FREE_BYTES = 64 << 20  # "full": under this, or under 1 % of a small file system


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str


def check_database(engine: Engine) -> Check:
    """Reachable and answering, and the schema at Alembic's head."""
    from tre.store.db import schema_is_current

    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = schema_is_current(conn)
    except Exception as exc:  # noqa: BLE001 - any driver error means "not reachable"
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return Check("database", FAIL, f"unreachable ({engine.url.render_as_string()}): {first}")
    if not current:
        return Check("database", WARN, "reachable, schema not at the newest migration: run tre admin init")
    return Check("database", OK, f"reachable ({engine.url.render_as_string()}), schema current")


def _disk(name: str, path: Path) -> Check:
    try:
        usage = shutil.disk_usage(path)
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError as exc:
        return Check(name, FAIL, f"{path}: cannot read its file system: {exc.strerror}")
    if read_only:
        # Mounted read-only (by an admin, or by the kernel after a disk error: ext4's
        # errors=remount-ro): every write fails, and the database's own error ("unable to
        # open database file") does not say why.
        return Check(
            name,
            FAIL,
            f"{path}: read-only file system; jobs, uploads, the database and audit writes fail "
            "until it is writable again (check the kernel log for a disk error, then remount it)",
        )
    free_mib = usage.free // (1 << 20)
    share = usage.free / usage.total if usage.total else 0.0
    where = f"{path}: {free_mib} MiB free ({share:.0%})"
    if usage.free < min(FULL_FREE_BYTES, usage.total // 100):
        return Check(name, FAIL, f"{where}: full; jobs, uploads and audit writes fail until room is made")
    if usage.free < LOW_FREE_BYTES or share < LOW_FREE_SHARE:
        return Check(name, WARN, f"{where}: low")
    return Check(name, OK, where)


def check_disks(settings: Settings, engine: Engine) -> list[Check]:
    """Free space where the platform writes: the state folder, job outputs, the database file."""
    places = {"disk state": settings.home, "disk jobs": settings.jobs_dir}
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if database and database != ":memory:":
        places["disk database"] = Path(database).parent
    seen: set[int] = set()
    checks = []
    for name, path in places.items():
        probe = path if path.exists() else settings.home
        try:
            dev = probe.stat().st_dev
        except OSError:
            dev = -1
        if dev in seen and dev != -1:
            continue  # the same file system as one already reported
        seen.add(dev)
        checks.append(_disk(name, probe))
    return checks


def check_keys(settings: Settings) -> Check:
    """The key folder private (0700) and every key file in it private (0600), non-empty and
    the platform's own: a readable signing key lets anyone forge tokens or audit entries."""
    from tre.audit.signing import KEY_FILE
    from tre.auth.tokens import SIGNING_KEY_FILENAME

    keys = settings.keys_dir
    try:
        st = keys.lstat()
    except FileNotFoundError:
        return Check("keys", FAIL, f"{keys} is missing: run tre admin init (or restore it from backup)")
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o077 or st.st_uid != os.geteuid():
        return Check("keys", FAIL, f"{keys} is not a folder private to this user (chmod 700, chown)")
    problems = []
    for path in sorted(keys.iterdir()):
        try:
            fst = path.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(fst.st_mode):
            problems.append(f"{path.name} is not a plain file")
        elif fst.st_mode & 0o077 or fst.st_uid != os.geteuid():
            problems.append(f"{path.name} is readable by others or not this user's (chmod 600)")
        elif fst.st_size == 0 and not path.name.startswith("."):
            problems.append(f"{path.name} is empty (restore it from backup)")
    missing = [n for n in (KEY_FILE, SIGNING_KEY_FILENAME) if not (keys / n).exists()]
    if problems:
        return Check("keys", FAIL, "; ".join(problems))
    if missing:
        return Check("keys", WARN, f"not made yet: {', '.join(missing)} (made at the first start)")
    return Check("keys", OK, f"{keys}: private")


def check_leftovers(settings: Settings) -> list[Check]:
    """What sandboxes of dead workers left on this host (the local executor's): mounted
    output file systems, scratch folders, job cgroups. The next worker start, or a running
    worker's next sweep, cleans them; a leftover that stays is named here."""
    from tre.executors import outputfs
    from tre.executors.cgroups import stale_job_cgroups

    left = outputfs.find_leftovers([settings.jobs_dir])
    mounted = [str(x.scratch.parent.name) for x in left if x.output_mounted or x.copy_interrupted]
    checks = []
    if left:
        checks.append(
            Check(
                "leftovers",
                WARN,
                f"{plural.count(len(left), 'scratch folder')} of dead workers under {settings.jobs_dir}"
                + (
                    f", outputs still mounted for {plural.agree(len(mounted), 'job', 'jobs')} "
                    f"{', '.join(sorted(mounted))}"
                    if mounted
                    else ""
                )
                + ": start (or restart) a worker on this host to recover them",
            )
        )
    else:
        checks.append(Check("leftovers", OK, f"no scratch folder of a dead worker under {settings.jobs_dir}"))
    groups = stale_job_cgroups()
    if groups:
        checks.append(
            Check(
                "cgroups",
                WARN,
                f"{plural.count(len(groups), 'job cgroup')} of dead workers: {', '.join(sorted(groups))}"
                "; a worker removes them when they are empty",
            )
        )
    return checks


def check_clock(engine: Engine, now: Callable[[], datetime] | None = None) -> Check:
    """This host's wall clock against the database server's (`tre.store.dbclock`): airlock
    requests expire only when both agree, so a skew holds them; said here, where an
    operator looks after an NTP step or a resumed virtual machine."""
    from tre.store.base import utcnow
    from tre.store.dbclock import SKEW_TOLERANCE, database_now

    try:
        with engine.connect() as conn:
            db_now = database_now(conn)
    except Exception:  # noqa: BLE001 - the database check says why
        return Check("clock", WARN, "not checked: the database cannot be read")
    skew = (now or utcnow)() - db_now
    ahead = "this host's clock is ahead" if skew > timedelta(0) else "the database's clock is ahead"
    if abs(skew) > SKEW_TOLERANCE:
        return Check(
            "clock",
            WARN,
            f"this host's clock and the database's differ by {abs(skew).total_seconds():.0f} s ({ahead}): "
            "airlock requests expire only once both agree; fix the time sync (NTP) of the one that is wrong",
        )
    return Check(
        "clock", OK, f"this host's clock and the database's agree (within {abs(skew).total_seconds():.1f} s)"
    )


def check_running_jobs(
    settings: Settings,
    engine: Engine,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Check:
    """Jobs still marked running whose worker is gone: a live worker ends them within a
    round; if one stays, no worker of that executor is running.

    Judged as a worker judges (`tre.jobs.worker.HeartbeatWatch`), never by the heartbeat's
    age on the wall clock: a job's worker is gone when its process on this host has ended,
    or when the doctor has watched its heartbeat stand still for ``worker_stale_after_s`` of
    its own monotonic time. Why: read by the wall clock, a clock step forward (NTP, a resumed
    virtual machine) made every live job look orphaned, and one back hid dead ones. The
    cost: with running jobs the check takes about one ``worker_heartbeat_s`` (each live
    heartbeat moves once), and ``worker_stale_after_s`` when one has stopped."""
    from tre.jobs.worker import HeartbeatWatch, process_gone
    from tre.store.db import session_scope
    from tre.store.models import Job, JobState

    def look() -> dict[str, Job]:
        with session_scope(engine) as s:
            rows = s.scalars(select(Job).where(Job.state == JobState.running.value))
            jobs = {j.id: j for j in rows}
            s.expunge_all()
            return jobs

    try:
        running = look()
        count = len(running)
        host = socket.gethostname()
        lost = {job_id for job_id, job in running.items() if process_gone(job, host)}
        watch = HeartbeatWatch(clock)
        watched = {job_id: job.heartbeat_at for job_id, job in running.items() if job_id not in lost}
        for job_id, beat in watched.items():
            watch.quiet_for(job_id, beat)
        while watched:
            sleep(settings.worker_heartbeat_s / 2)
            now = look()
            # Ended, or its heartbeat moved: its worker lives. Still the same: watched on.
            watched = {
                job_id: beat
                for job_id, beat in watched.items()
                if job_id in now and now[job_id].heartbeat_at == beat
            }
            stopped = {
                job_id
                for job_id, beat in watched.items()
                if watch.quiet_for(job_id, beat) >= settings.worker_stale_after_s
            }
            lost |= stopped
            watched = {job_id: beat for job_id, beat in watched.items() if job_id not in stopped}
    except Exception:  # noqa: BLE001 - the database check says why
        return Check("jobs", WARN, "not checked: the database cannot be read")
    if lost:
        names = sorted(lost)
        return Check(
            "jobs",
            WARN,
            f"{plural.count(len(names), 'job')} marked running whose worker is gone (its process "
            f"ended, or its "
            f"heartbeat stood still for {settings.worker_stale_after_s:g} s): {', '.join(names[:20])}"
            "; start a worker (of each job's executor): it ends them (failed, worker lost) or reattaches",
        )
    return Check("jobs", OK, f"{count} running, none orphaned")


def check_spooled_ends(settings: Settings, engine: Engine, database_up: bool) -> Check:
    """Job ends kept on disk while the database was away: written now if it answers."""
    from tre.jobs import end_spool
    from tre.jobs.worker import DB_AWAY, finish_job

    waiting = end_spool.spooled(settings)  # sets damaged files aside
    damaged = end_spool.damaged(settings)
    if damaged:
        names = ", ".join(p.name for p in damaged[:20])
        return Check(
            "job ends",
            FAIL,
            f"{plural.count(len(damaged), 'file')} in {end_spool.spool_dir(settings)} set aside "
            f"as damaged, not "
            f"written: {names}; not what a worker writes (someone or something wrote the state "
            "directory): read them, then remove them; their jobs are ended as lost",
        )
    if not waiting:
        return Check("job ends", OK, "none waiting on disk for the database")
    if database_up:
        try:
            written = end_spool.replay(
                settings, engine, lambda s, job, result: finish_job(settings, s, job, result), DB_AWAY
            )
        except Exception as exc:  # noqa: BLE001 - reported, the files stay for the next try
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            return Check("job ends", FAIL, f"{len(waiting)} kept on disk; writing them failed: {first}")
        left = end_spool.spooled(settings)
        if not left:
            return Check(
                "job ends",
                OK,
                f"wrote {plural.count(written, 'job end')} kept on disk while the database was away",
            )
        waiting = left
    names = ", ".join(e.job_id for e in waiting[:20])
    return Check(
        "job ends",
        WARN,
        f"{plural.count(len(waiting), 'job end')} kept in {end_spool.spool_dir(settings)} for the "
        f"database: {names}"
        "; written when it answers (a worker round or tre admin doctor)",
    )


def check_spooled_refusals(settings: Settings, engine: Engine, database_up: bool) -> Check:
    """Refusal entries a server kept on disk (killed, or the store away): written now."""
    from tre.audit import refusal_spool
    from tre.audit.refusals import record_refusals

    name = "refusal entries"
    if database_up:
        claimed = refusal_spool.claim(settings.home)
        events = [e for c in claimed for e in c.events]
        if claimed and record_refusals(engine, events, claimed=claimed):
            refusal_spool.release(claimed)
            written = f"wrote {plural.count(len(events), 'refusal entry')} kept on disk"
        else:
            refusal_spool.give_back(claimed)
            written = ""
    else:
        written = ""
    bad = refusal_spool.damaged(settings.home)  # after the claim, which sets aside what it cannot write
    left = refusal_spool.waiting(settings.home)
    folder = refusal_spool.spool_dir(settings.home)
    if bad:
        return Check(
            name,
            FAIL,
            f"{plural.count(len(bad), 'unreadable file')} in {folder}, or holding entries that "
            f"are not refusals "
            f"(written by someone else: keep them as evidence): {bad[0].name}; read them by hand",
        )
    if left:
        return Check(
            name,
            WARN,
            f"{plural.count(len(left), 'batch', 'batches')} kept in {folder} for the database; "
            f"written when it answers",
        )
    return Check(name, OK, written or "none waiting on disk for the database")


def check_accounts(settings: Settings, engine: Engine) -> Check:
    """Each user row against the signed audit log's account entries (`tre.audit.accounts`):
    a row edited in the database (enabled again, a role added, an account inserted, the token
    epoch set back) is obeyed by authentication, so it is named here."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from tre.audit.accounts import differences
    from tre.audit.signing import get_signer, log_exists
    from tre.errors import TreError

    try:
        with Session(engine) as s:
            signer = get_signer(settings.keys_dir, create=False) if log_exists(settings.keys_dir) else None
            found = differences(s, signer)
    except SQLAlchemyError:
        return Check("accounts", WARN, "not checked: the database cannot be read")
    except TreError as exc:  # the log's damage or its key: no account can be vouched for
        return Check("accounts", FAIL, f"not checked against the audit log: {exc.detail} (tre audit check)")
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        return Check(
            "accounts",
            FAIL,
            f"{plural.count(len(found), 'account')} {plural.agree(len(found), 'differs', 'differ')} "
            "from the signed audit log, edited in the database: "
            f"{'; '.join(found[:3])}{more}. Set each back (tre admin user) and find who wrote the database",
        )
    return Check("accounts", OK, "every user as the signed audit log left it")


def run_checks(settings: Settings, engine: Engine) -> list[Check]:
    database = check_database(engine)
    checks = [database, *check_disks(settings, engine), check_keys(settings), *check_leftovers(settings)]
    checks.append(check_spooled_ends(settings, engine, database.status != FAIL))
    checks.append(check_spooled_refusals(settings, engine, database.status != FAIL))
    if database.status != FAIL:
        checks.append(check_clock(engine))
        checks.append(check_running_jobs(settings, engine))
        checks.append(check_accounts(settings, engine))
    return checks


def checks_as_json(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
