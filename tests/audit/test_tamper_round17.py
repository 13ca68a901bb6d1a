"""Round 17: the job-end spool (``<TRE_HOME>/spool/job-ends``) as an insider with write access
to the state directory would use it, and the offline verifier's reading of a bundle header.

A worker whose database is away keeps each job's end there, one JSON file per job, and the
next worker round (or ``tre admin doctor``) writes it: the job's state, exit code and reason,
audited as ``job.ended``. Until round 17 the file was read as whatever JSON it held: a file
named after one job ended another, an exit code given as text or beyond 32 bits was written
or failed every round, a FIFO put there blocked the worker round for ever, a damaged file
stayed and was read again every round. Real parts: the real app, the real worker's
`finish_job`, real files (and a real FIFO) in the real spool folder.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, func, select

from tests.audit.conftest import export_bytes
from tests.audit.test_cli import seed
from tests.audit.test_tamper_round10 import _cli
from tests.audit.test_tamper_round15 import _join, _lines
from tre.audit import configure
from tre.audit.note import TIMESTAMP_EXT, Checkpoint, open_checkpoint
from tre.audit.signing import AuditSigner
from tre.audit.verify import verify_bundle
from tre.config import Settings
from tre.doctor import check_spooled_ends
from tre.executors.base import JobResult
from tre.jobs import end_spool
from tre.jobs.worker import DB_AWAY, finish_job
from tre.states import JobState
from tre.store.base import new_id
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job

WORKER = "host:1:w"


def _end(job_id: str, **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "job_id": job_id,
        "worker_id": WORKER,
        "state": "succeeded",
        "exit_code": 0,
        "reason": "forged",
    }
    body.update(over)
    return body


def _json(job_id: str, **over: object) -> bytes:
    return json.dumps(_end(job_id, **over)).encode()


# name -> what to put at <spool>/<job>.json, given the job's id, another running job's id
# and a scratch folder. Each is not what `spool_end` writes; none may end a job.
Plant = Callable[[Path, str, str, Path], None]


def _bytes(make: Callable[[str, str], bytes]) -> Plant:
    return lambda path, job, other, _tmp: path.write_bytes(make(job, other))


def _fifo(path: Path, job: str, other: str, tmp: Path) -> None:
    os.mkfifo(path)


def _link(path: Path, job: str, other: str, tmp: Path) -> None:
    target = tmp / f"elsewhere-{job}.json"
    target.write_bytes(_json(job))  # a well-formed end, reached through a link
    path.symlink_to(target)


DAMAGED: dict[str, Plant] = {
    "names another job": _bytes(lambda j, o: _json(o)),
    "not JSON": _bytes(lambda j, o: b"{not json"),
    "a list": _bytes(lambda j, o: json.dumps([_end(j)]).encode()),
    "a field missing": _bytes(
        lambda j, o: json.dumps({k: v for k, v in _end(j).items() if k != "reason"}).encode()
    ),
    "a field more": _bytes(lambda j, o: _json(j, outputs=["x"])),
    "a repeated key": _bytes(lambda j, o: _json(j)[:-1] + b', "state": "failed"}'),
    "a running state": _bytes(lambda j, o: _json(j, state="running")),
    "no state": _bytes(lambda j, o: _json(j, state="won")),
    "exit code as text": _bytes(lambda j, o: _json(j, exit_code="0")),
    "exit code beyond 32 bits": _bytes(lambda j, o: _json(j, exit_code=2**40)),
    "exit code true": _bytes(lambda j, o: _json(j, exit_code=True)),
    "reason not text": _bytes(lambda j, o: _json(j, reason=["x"])),
    "empty worker id": _bytes(lambda j, o: _json(j, worker_id="")),
    "oversize": _bytes(lambda j, o: _json(j, reason="x" * (1 << 20))),
    "not UTF-8": _bytes(lambda j, o: _json(j).replace(b"forged", b"\xff\xfe")),
    "a FIFO": _fifo,
    "a symbolic link": _link,
}


def _running_jobs(engine: Engine, n: int) -> list[str]:
    """``n`` jobs of alice's project, running under `WORKER` (rows as the worker leaves them)."""
    ids = [new_id() for _ in range(n)]
    with session_scope(engine) as s:
        for job_id in ids:
            s.add(
                Job(
                    id=job_id,
                    project_id="p1",
                    submitted_by="alice",
                    image="python:3.11",
                    command=["true"],
                    state=JobState.running.value,
                    worker_id=WORKER,
                )
            )
    return ids


def _replay(settings: Settings, engine: Engine) -> int:
    """A worker round's replay, on a thread: a FIFO blocked the old code's read for ever."""
    out: list[int] = []

    def run() -> None:
        out.append(
            end_spool.replay(settings, engine, lambda s, job, r: finish_job(settings, s, job, r), DB_AWAY)
        )

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    assert out, "the replay blocked (a FIFO in the spool?)"
    return out[0]


def _states(engine: Engine, ids: list[str]) -> dict[str, str]:
    with session_scope(engine) as s:
        return {i: s.get(Job, i).state for i in ids}  # type: ignore[union-attr]


def test_the_job_end_spool_writes_only_what_a_worker_writes(  # type: ignore[no-untyped-def]
    world, engine, settings, tmp_path, caplog, monkeypatch
) -> None:
    names = list(DAMAGED)
    ids = _running_jobs(engine, len(names) + 2)
    victim, good = ids[-2:]  # the job a forged file names; a job whose real end is spooled
    folder = end_spool.spool_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    for name, job_id in zip(names, ids, strict=False):
        DAMAGED[name](folder / f"{job_id}.json", job_id, victim, tmp_path)
    end_spool.spool_end(settings, good, WORKER, JobResult(JobState.failed, 3, "exit 3"))

    with caplog.at_level("CRITICAL", logger="tre.audit.alert"):
        assert _replay(settings, engine) == 1  # the real end only
    states = _states(engine, ids)
    assert states[good] == "failed"
    wrong = {n: states[j] for n, j in zip(names, ids, strict=False) if states[j] != "running"}
    assert not wrong, f"ended from a damaged file: {wrong}"
    assert states[victim] == "running", "a file named after one job ended another"
    # Each is set aside, said once, and no longer stands for its job's end: the job is
    # ended as lost by the next worker round, as if the file had been deleted.
    aside = {p.name for p in end_spool.damaged(settings)}
    assert aside == {f"{j}.json.damaged" for j in ids[: len(names)]}, sorted(aside)
    assert not list(folder.glob("*.json")), "a damaged file stayed, read again every round"
    assert sum("set aside" in r.getMessage() for r in caplog.records) == len(names)
    assert all(not end_spool.is_spooled(settings, j) for j in ids)
    assert end_spool.spooled_job_ids(settings) == set()
    check = check_spooled_ends(settings, engine, database_up=True)
    assert check.status == "fail" and "damaged" in check.detail, check

    # Replay: the real end put back after it was written is dropped, never written twice.
    end_spool.spool_end(settings, good, WORKER, JobResult(JobState.succeeded, 0, "put back"))
    assert _replay(settings, engine) == 0
    with session_scope(engine) as s:
        ends = s.scalar(
            select(func.count()).where(AuditEntry.job_id == good, AuditEntry.action == "job.ended")
        )
        assert ends == 1 and s.get(Job, good).state == "failed"  # type: ignore[union-attr]
    # What a worker writes is always read back: a reason of any length is cut to fit.
    long = end_spool.spool_end(
        settings, "long-job", WORKER, JobResult(JobState.failed, 1, "\u00e9" * 100_000)
    )
    assert end_spool.read_end(long).result.reason == "\u00e9" * 8192
    # A file another worker wrote and removed between the listing and the read is no damage:
    # skipped without an alert (two workers replay the folder).
    caplog.clear()
    real_read = end_spool.read_end

    def raced(path: Path) -> end_spool.SpooledEnd:
        path.unlink()
        return real_read(path)

    monkeypatch.setattr(end_spool, "read_end", raced)
    with caplog.at_level("CRITICAL", logger="tre.audit.alert"):
        assert end_spool.spooled(settings) == []
    assert not caplog.records, caplog.records
    assert not (folder / "long-job.json.damaged").exists()
    shutil.rmtree(folder)


def _header_variants(real: bytes, signer: AuditSigner) -> dict[str, tuple[bytes, str, str]]:
    """name -> (bundle, error or warning expected, words said). The header is unsigned; each
    edit below verified before round 17 (nothing read ``origin`` or ``exported_at``)."""
    lines = _lines(real)
    head = json.loads(lines[0])

    def with_header(**over: object) -> bytes:
        changed = {k: v for k, v in {**head, **over}.items() if v is not _DROP}
        return _join([json.dumps(changed, sort_keys=True).encode(), *lines[1:]])

    hour = 3600
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 24 * hour))
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 24 * hour))
    # A checkpoint of the same tree, signed with the real key, a day ahead of the clock.
    last = json.loads(lines[-1])["checkpoint"]
    cp = open_checkpoint(last, signer.verifier_key)
    ahead = int((time.time() + 24 * hour) * 1000)
    future_cp = signer.sign(Checkpoint(cp.origin, cp.tree_size, cp.root_hash, (f"{TIMESTAMP_EXT} {ahead}",)))
    return {
        "origin of another log": (with_header(origin="other.example/log"), "error", "origin"),
        "no origin": (with_header(origin=_DROP), "error", "origin"),
        "origin not text": (with_header(origin=["x"]), "error", "origin"),
        "exported before its newest checkpoint": (
            with_header(exported_at=past),
            "error",
            "before its newest",
        ),
        "no exported_at": (with_header(exported_at=_DROP), "error", "exported_at"),
        "exported_at not a time": (with_header(exported_at="yesterday"), "error", "exported_at"),
        "exported_at without a zone": (with_header(exported_at=past[:-1]), "error", "exported_at"),
        "exported in the future": (with_header(exported_at=future), "warning", "in the future"),
        # Its own warning, and an error: the export names a time before that signature.
        "a checkpoint signed in the future": (
            _join([*lines[:-1], json.dumps({"checkpoint": future_cp}).encode()]),
            "error",
            "before its newest",
        ),
    }


_DROP = object()


def test_the_bundle_headers_origin_and_export_time_are_checked(  # type: ignore[no-untyped-def]
    engine, settings, signer, tmp_path
) -> None:
    configure(engine, settings.keys_dir)
    seed(engine, 3)
    real = export_bytes(engine, signer)
    clean = verify_bundle(real, signer.verifier_key)
    assert clean.ok and not clean.warnings, (clean.errors, clean.warnings)
    missed = {}
    for name, (data, kind, words) in _header_variants(real, signer).items():
        report = verify_bundle(data, signer.verifier_key)
        said = report.errors if kind == "error" else report.warnings
        if not any(words in line for line in said) or (kind == "warning") != report.ok:
            missed[name] = (report.errors, report.warnings)
        if name == "a checkpoint signed in the future" and not any(
            "checkpoint is signed" in w for w in report.warnings
        ):
            missed[name] = (report.errors, report.warnings)
    assert not missed, missed
    # The CLI says it in one line, with a non-zero exit.
    bundle = tmp_path / "b"
    bundle.write_bytes(_header_variants(real, signer)["origin of another log"][0])
    code, out, _ = _cli("verify", str(bundle), "--key", signer.verifier_key.encode(), "--no-pinned")
    assert code == 1 and "origin" in out.splitlines()[0], out
