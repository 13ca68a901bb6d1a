"""The airlock's side of a federation node: ask for a child job's release, read its outcome,
hand over exactly what the node's DAC released.

The node agent (tre.federation.node) acts for the federated submitter, who is a member of
the node's local project; everything goes through the ordinary workflow, so the node's
checks, blinded DAC votes, grant re-checks at download and audit entries all apply. What
leaves is the researcher's view: names the job's name screening withholds stay withheld
(placeholders), and the disclosure record is the one a researcher would be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from egress_review import joblog, outputnames, workflow
from tre.auth.principal import Principal
from tre.config import Settings
from tre.federation.names import file_name_for
from tre.states import EgressState
from tre.store.models import EgressRequest, Job


@dataclass(frozen=True)
class ReleasedFile:
    name: str
    sha256: str
    size: int
    data: bytes


def request_release(
    session: Session, settings: Settings, principal: Principal, job_id: str, wanted: list[str], why: str
) -> str:
    """Open an egress request for the job's outputs ``wanted`` (names; empty: every recorded
    output, by index). Answers the request id; raises the workflow's errors unchanged."""
    count = outputnames.output_stamp(session, job_id)[0]  # not the outputs themselves
    paths = wanted or [f"#{i}" for i in range(count)]
    req = workflow.create_request(session, settings, principal, job_id=job_id, paths=paths, justification=why)
    return req.id


def request_state(session: Session, request_id: str) -> EgressState:
    req = workflow.load_request(session, request_id)
    return EgressState(req.state)


def released_files(
    session: Session, settings: Settings, principal: Principal, request_id: str
) -> tuple[list[ReleasedFile], dict[str, Any]]:
    """Every file of an approved request, read through the workflow's download (membership and
    grants re-checked, bytes re-verified against the frozen hash, each read audited), with the
    researcher's view of the disclosure record."""
    req: EgressRequest = workflow.visible_request(session, request_id, principal)
    names = outputnames.request_name_view(session, settings, principal, req.job_id)
    out = []
    for f in sorted(req.files, key=lambda x: x.id or 0):  # not by hash: that order is a channel
        _, fh = workflow.open_release_file(session, settings, principal, request_id, f.id)
        with fh:
            data = fh.read()
        out.append(
            ReleasedFile(
                file_name_for(workflow.shown_path(f, principal, names, settings.keys_dir)),
                f.sha256,
                f.size,
                data,
            )
        )
    # Released (approved) files: their real hashes are the requester's now.
    hashes = outputnames.hash_view(
        session, settings.keys_dir, principal, req.project_id, req.job_id, released=req.state == "approved"
    )
    record = outputnames.masked_record(
        workflow.logged_record(session, principal, req), list(req.files), names, hashes
    )
    return out, record


def screened_log(session: Session, settings: Settings, job: Job) -> bytes:
    """The job's log as the submitter (a researcher of the local project) may see it here:
    screened by the datasets' policies and cut at the per-job and per-project budgets, each
    byte charged as if they read it (`joblog.researcher_log`). Never the raw log."""
    data, _ = joblog.researcher_log(session, settings, job, 0)
    return data
