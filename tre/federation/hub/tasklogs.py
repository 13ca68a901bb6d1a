"""What the hub's TES views say of each node's run: the node's screened log, its released
files, and its state in fixed words.

A node sends, for a child whose local job ended, the log as its own researcher screening
showed the submitter (within the per-job budget) and the job's exit code
(`tre.federation.wire.ScreenedLogIn`); never the raw log. The hub keeps the latest one per
child, one file each, and audits each new one (``federation.log_received``: node, child, the
SHA-256 and size). A TES task log is one per node: its screened log as the executor's
``stdout`` (FULL view only), its **released** files as output file logs (a file uploaded
but not released by the node's airlock is not listed: its bytes came with nothing the DAC
said), and a system log line of the node's state and reason (fixed vocabulary).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.audit import record_event
from tre.config import Settings
from tre.federation.hub.jobs import node_child
from tre.federation.vocabulary import ChildState
from tre.federation.wire import ScreenedLogIn
from tre.jobs.shown_run import exit_class
from tre.store.federation_models import FedChild, FedJob, FedResultFile
from tre.tes.models import TesExecutorLog, TesOutputFileLog, TesTaskLog


def logs_dir(settings: Settings) -> Path:
    path = settings.home / "federation" / "logs"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _log_path(settings: Settings, cid: str) -> Path:
    # ``cid`` is 32 hex digits (the route's pattern and `node_child`'s lookup).
    return logs_dir(settings) / f"{cid}.json"


def receive_log(session: Session, settings: Settings, node: str, cid: str, body: ScreenedLogIn) -> str:
    """Keep a node's screened log of its own child (the latest replaces the one before: a
    job lost with its worker is run again). Answers the log's SHA-256."""
    # Also while the hub still shows the child pending: a quick job may end before the node's
    # first report, and the log goes before the state. It is shown once a state is.
    child = node_child(session, node, cid)
    data = json.dumps(body.model_dump(), sort_keys=True).encode()
    sha = hashlib.sha256(body.log.encode()).hexdigest()
    target = _log_path(settings, cid)
    if target.is_file() and target.read_bytes() == data:
        return sha  # sent again (an answer lost on the way): nothing new
    tmp = target.with_name(f".{cid}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(target)
    job = session.get(FedJob, child.job_id)
    record_event(
        session,
        actor=f"node:{node}",
        action="federation.log_received",
        project_id=job.project_id if job else None,
        details={
            "fed_job": child.job_id,
            "child": cid,
            "sha256": sha,
            "size": len(body.log.encode()),
            "exit_code": body.exit_code,
        },
    )
    return sha


def _stored_log(settings: Settings, cid: str) -> ScreenedLogIn | None:
    path = _log_path(settings, cid)
    if not path.is_file():
        return None
    return ScreenedLogIn.model_validate_json(path.read_bytes())


def task_logs(
    session: Session, settings: Settings, job: FedJob, view: dict[str, Any], base_url: str, full: bool
) -> list[TesTaskLog]:
    """One TES task log per node, in node order (``view``: `jobs.job_view`'s answer)."""
    out = []
    for row in view["children"]:
        state, reason = str(row["state"]), str(row["reason"])
        executor_logs = []
        shown = _stored_log(settings, str(row["child_id"])) if state != ChildState.pending else None
        if shown is not None and shown.exit_code is not None:
            executor_logs.append(
                TesExecutorLog(
                    # A class (tre.jobs.shown_run), whatever an older node sent.
                    exit_code=exit_class(shown.exit_code),
                    stdout=shown.log if full else None,
                    stderr="" if full else None,
                )
            )
        out.append(
            TesTaskLog(
                logs=executor_logs,
                metadata={
                    "tre.node": str(row["node"]),
                    "tre.node_state": state,
                    "tre.node_reason": reason,
                    "tre.node_status": str(row["node_status"]),
                },
                outputs=_released(session, job, str(row["child_id"]), str(row["node"]), state, base_url),
                system_logs=[f"node {row['node']}: {state}" + (f" ({reason})" if reason else "")]
                if full
                else None,
            )
        )
    return out


def _released(
    session: Session, job: FedJob, cid: str, node: str, state: str, base_url: str
) -> list[TesOutputFileLog]:
    """The child's files once its node released them, with their hub URLs; none before."""
    if state != ChildState.released:
        return []
    child = session.get(FedChild, cid)
    if child is None or child.state != ChildState.released:
        return []
    rows = session.scalars(
        select(FedResultFile).where(FedResultFile.child_id == cid).order_by(FedResultFile.name)
    )
    return [
        TesOutputFileLog(
            url=f"{base_url}/hub/v1/jobs/{job.id}/results/{node}/{f.name}",
            path=f.name,
            size_bytes=str(f.size),
        )
        for f in rows
    ]
