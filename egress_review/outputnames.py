"""What researchers see of a job's output file names.

A job chooses its output names, so a name is a channel out of the sandbox like a log line:
220 names once carried a patient's name and a whole CT slice through `tre outputs`. So the
names are judged together by the log screen of the job's datasets (identifiers, also in
disguise; encoded payload summed over neighbouring names), and under ``status_only`` none is
shown. A researcher then sees each output by its index, size and SHA-256, and names it in an
egress request as ``#<index>`` or ``sha256:<hex>``. DAC members, auditors and admins see the
real names (they review them).

The index is the position in the list ordered by hash (then row id): an order the job
cannot steer to spell something that the hashes do not already show.

A cohort job records tens of thousands of outputs, so nothing here loads a job's outputs to
answer for one of them: pages and single files are read by SQL in index order (the index
``ix_job_outputs_job_sha256``), and the researcher's view of the names, which must judge
every name together, is screened once per job and kept (`_NAME_VIEWS`) while the job's
outputs and its screen are unchanged.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from tre.access import STAFF_ROLES, sees_raw_output_names
from tre.auth.principal import Principal
from tre.config import Settings
from tre.jobs.shown_size import rounded_size
from tre.store.models import EgressFile, Job, JobOutput

_BY_INDEX = re.compile(r"^#(\d{1,9})$")
_BY_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


def _in_index_order(job_id: str) -> Select[Any]:
    return select(JobOutput).where(JobOutput.job_id == job_id).order_by(JobOutput.sha256, JobOutput.id)


def output_page(session: Session, job_id: str, offset: int, limit: int) -> list[JobOutput]:
    """``limit`` outputs from index ``offset``, in index order (the first's index is ``offset``)."""
    return list(session.scalars(_in_index_order(job_id).offset(offset).limit(limit)))


def output_stamp(session: Session, job_id: str) -> tuple[int, int]:
    """How many outputs the job has recorded and the newest row id: changes when they do."""
    count, newest = session.execute(
        select(func.count(JobOutput.id), func.max(JobOutput.id)).where(JobOutput.job_id == job_id)
    ).one()
    return int(count or 0), int(newest or 0)


@dataclass(frozen=True)
class NameView:
    """Which names of one job a caller may not see (every one when ``all_hidden``)."""

    hidden: frozenset[str]
    all_hidden: bool = False

    def shows(self, path: str) -> bool:
        return not self.all_hidden and path not in self.hidden


SHOW_ALL = NameView(frozenset())


# job id -> (the screen, the outputs' stamp, the view): a cohort's 50,000 names took seconds
# to screen, and were screened again on every listing and every view of an egress request.
_NAME_VIEWS: OrderedDict[str, tuple[object, tuple[int, int], NameView]] = OrderedDict()
_NAME_VIEWS_LOCK = threading.Lock()
NAME_VIEW_JOBS = 32


def name_view(session: Session, settings: Settings, principal: Principal, job: Job) -> NameView:
    """The names of ``job``'s outputs hidden from ``principal`` (none from staff reviewing
    it; a member of its project is a researcher here whatever other roles they hold)."""
    if sees_raw_output_names(session, principal, job.project_id):
        return SHOW_ALL
    from egress_review.joblog import job_log_screen

    try:
        screen, _ = job_log_screen(session, settings, job)
    except Exception:  # noqa: BLE001 - no policy: show no names (fail closed)
        return NameView(frozenset(), all_hidden=True)
    if screen.visibility == "full":
        return SHOW_ALL
    if screen.visibility == "status_only":
        return NameView(frozenset(), all_hidden=True)
    # The screen is rebuilt (a new object) when the policies or the identifiers change, and
    # the stamp changes when outputs are recorded again: either makes the kept view stale.
    stamp = output_stamp(session, job.id)
    with _NAME_VIEWS_LOCK:
        kept = _NAME_VIEWS.get(job.id)
        if kept is not None and kept[0] is screen and kept[1] == stamp:
            _NAME_VIEWS.move_to_end(job.id)
            return kept[2]
    names = list(
        session.scalars(
            select(JobOutput.path).where(JobOutput.job_id == job.id).order_by(JobOutput.sha256, JobOutput.id)
        )
    )
    text = ("\n".join(names) + "\n").encode()
    # Judged as one log, but not cut at the log's per-job byte budget: the names are bounded
    # by their own policy fields (max_output_files, max_output_name_chars). Cut there, the
    # names of a cohort past ~10,000 outputs (256 KiB) no longer matched the lines judged,
    # and every name of the job was withheld.
    screening = replace(screen, limit_bytes=max(screen.limit_bytes, len(text))).screen_log(text, final=True)
    hidden = {names[i] for i, line in enumerate(screening.lines) if line.withheld}
    # A name that does not decode to one whole line (it cannot hold a newline; be safe).
    view = (
        NameView(frozenset(), all_hidden=True)
        if len(screening.lines) != len(names)
        else NameView(frozenset(hidden))
    )
    with _NAME_VIEWS_LOCK:
        _NAME_VIEWS[job.id] = (screen, stamp, view)
        while len(_NAME_VIEWS) > NAME_VIEW_JOBS:
            _NAME_VIEWS.popitem(last=False)
    return view


def placeholder(sha256: str) -> str:
    """What stands for a withheld name where a name is needed (a download's file name)."""
    return f"sha256-{sha256[:16]}"


def _view_for_request(session: Session, settings: Settings, principal: Principal, job_id: str) -> NameView:
    job = session.get(Job, job_id)
    if job is None:
        return NameView(frozenset(), all_hidden=not principal.has(*STAFF_ROLES))
    return name_view(session, settings, principal, job)


def request_name_view(session: Session, settings: Settings, principal: Principal, job_id: str) -> NameView:
    """The names of the egress files of a request on job ``job_id`` hidden from ``principal``."""
    return _view_for_request(session, settings, principal, job_id)


def names_a_path(wanted: str) -> bool:
    """Whether an egress request names a file by its path (not ``#<index>`` or ``sha256:``)."""
    return not (_BY_INDEX.match(wanted) or _BY_HASH.match(wanted))


def resolve_recorded(session: Session, job_id: str, wanted: str) -> JobOutput | None:
    """The recorded output of ``job_id`` that an egress request means by ``wanted``: the path
    itself, ``#<index>`` or ``sha256:<hex>`` (the first in index order with that hash); None
    when nothing matches. One indexed query: naming one file among 50,000 must not read them."""
    query = _in_index_order(job_id)
    if m := _BY_INDEX.match(wanted):
        query = query.offset(int(m.group(1)))
    elif m := _BY_HASH.match(wanted):
        query = query.where(JobOutput.sha256 == m.group(1))
    else:
        query = query.where(JobOutput.path == wanted)
    return session.scalars(query.limit(1)).first()


def masked_record(
    record: dict[str, Any], files: list[EgressFile], names: NameView, principal: Principal
) -> dict[str, Any]:
    """The disclosure record as ``principal`` may see it: withheld names replaced by
    placeholders (and their checks dropped), files in hash order so that order spells nothing."""
    if not any(not names.shows(f.path) for f in files):
        return record
    by_path = {f.path: f for f in files}
    shown = []
    for entry in record.get("files", []):
        f = by_path.get(entry.get("path", ""))
        if f is not None and not names.shows(f.path):
            entry = {**entry, "path": placeholder(f.sha256), "checks": [], "name_withheld": True}
        shown.append(entry)
    shown.sort(key=lambda e: str(e.get("sha256", "")))
    return {**record, "files": shown, "masked_for_researcher": True}


def rounded_sizes(record: dict[str, Any]) -> dict[str, Any]:
    """The disclosure record with every file's size rounded up (`tre.jobs.shown_size`)."""
    files = [
        {**e, "size": rounded_size(e["size"]), "size_rounded": True} if isinstance(e.get("size"), int) else e
        for e in record.get("files", [])
    ]
    return {**record, "files": files}
