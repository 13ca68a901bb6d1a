"""What researchers see of a job's output file names.

A job chooses its output names, so a name is a channel out of the sandbox like a log line:
220 names once carried a patient's name and a whole CT slice through `tre outputs`. So the
names are judged together by the log screen of the job's datasets (identifiers, also in
disguise; encoded payload summed over neighbouring names), and under ``status_only`` none is
shown. A researcher then sees each output by its index, size and keyed handle (in the
``sha256`` field, with ``sha256_keyed``: `tre.jobs.output_handles`; never the real SHA-256 of
an unreleased output, which they could invert offline for the secret bits of a template they
wrote), and names it in an egress request as ``#<index>`` or ``sha256:<handle>``. DAC
members, auditors and admins see the real names and hashes (they review them).

The index is the position in the list ordered by handle (then row id): a keyed order the job
can neither steer nor read (ordered by the real hash, the permutation of n files alone
carried log2(n!) bits of their contents; by name, the order of withheld names).

A cohort job records tens of thousands of outputs, so nothing here loads a job's outputs
once per answer: the index order (by handle) is computed once per job from its rows' ids and
hashes (one query, one HMAC a row) and kept (`_ORDERS`) while the job's outputs are
unchanged, and a page or a single file is then read by row id; the researcher's view of the
names, which must judge every name together, is screened once per job and kept
(`_NAME_VIEWS`) while the job's outputs and its screen are unchanged.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tre.access import STAFF_ROLES, sees_raw_output_names
from tre.auth.principal import Principal
from tre.config import Settings
from tre.jobs.output_handles import handle_key, output_handle
from tre.jobs.shown_size import rounded_size
from tre.store.models import EgressFile, Job, JobOutput

_BY_INDEX = re.compile(r"^#(\d{1,9})$")
_BY_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class IndexOrder:
    """One job's outputs in index order: row ids, and the index of each handle."""

    ids: list[int]
    by_handle: dict[str, int]


# job id -> (handle key, the outputs' stamp, the order): a cohort's 50,000 handles take a
# tenth of a second to compute, once per job rather than once per page.
_ORDERS: OrderedDict[str, tuple[bytes, tuple[int, int], IndexOrder]] = OrderedDict()
_ORDERS_LOCK = threading.Lock()
ORDER_JOBS = 16


def index_order(session: Session, keys_dir: Path, job_id: str) -> IndexOrder:
    """The index order of ``job_id``'s outputs: by keyed handle, then row id."""
    key = handle_key(keys_dir)
    stamp = output_stamp(session, job_id)
    with _ORDERS_LOCK:
        kept = _ORDERS.get(job_id)
        if kept is not None and kept[0] == key and kept[1] == stamp:
            _ORDERS.move_to_end(job_id)
            return kept[2]
    rows = session.execute(select(JobOutput.id, JobOutput.sha256).where(JobOutput.job_id == job_id)).all()
    ordered = sorted((output_handle(key, job_id, sha), row_id) for row_id, sha in rows)
    by_handle: dict[str, int] = {}
    for i, (handle, _) in enumerate(ordered):
        by_handle.setdefault(handle, i)
    order = IndexOrder([row_id for _, row_id in ordered], by_handle)
    with _ORDERS_LOCK:
        _ORDERS[job_id] = (key, stamp, order)
        while len(_ORDERS) > ORDER_JOBS:
            _ORDERS.popitem(last=False)
    return order


def _rows_by_id(session: Session, ids: list[int]) -> list[JobOutput]:
    """The rows with ``ids``, in that order (read in chunks: a page is at most a few hundred,
    TES reads every output)."""
    found: dict[int, JobOutput] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        found.update((o.id, o) for o in session.scalars(select(JobOutput).where(JobOutput.id.in_(chunk))))
    return [found[i] for i in ids if i in found]


def output_page(session: Session, keys_dir: Path, job_id: str, offset: int, limit: int) -> list[JobOutput]:
    """``limit`` outputs from index ``offset``, in index order (the first's index is ``offset``)."""
    ids = index_order(session, keys_dir, job_id).ids
    return _rows_by_id(session, ids[max(0, offset) : max(0, offset) + max(0, limit)])


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
    # In index order (by handle): the screen sums encoded payload over neighbouring names, so
    # which names it withholds may depend on their order, which must not be the real hashes'.
    rows = session.execute(select(JobOutput.id, JobOutput.path).where(JobOutput.job_id == job.id)).all()
    path_of = {row_id: path for row_id, path in rows}
    names = [path_of[i] for i in index_order(session, settings.keys_dir, job.id).ids if i in path_of]
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


def placeholder(handle: str) -> str:
    """What stands for a withheld name where a name is needed (a download's file name): the
    first 16 hex digits of the output's keyed handle, never of its real SHA-256."""
    return f"sha256-{handle[:16]}"


@dataclass(frozen=True)
class HashView:
    """How one caller sees one job's output hashes: the real SHA-256 (staff, or the
    requester of released files) or, when ``keyed``, the handle under ``key``. Placeholders
    are made from the handle whichever is shown, so they stay the same after release."""

    job_id: str
    key: bytes
    keyed: bool

    def handle(self, sha256: str) -> str:
        return output_handle(self.key, self.job_id, sha256)

    def shown(self, sha256: str) -> str:
        return self.handle(sha256) if self.keyed else sha256

    def placeholder(self, sha256: str) -> str:
        return placeholder(self.handle(sha256))


def hash_view(
    session: Session,
    keys_dir: Path,
    principal: Principal,
    project_id: str,
    job_id: str,
    *,
    released: bool = False,
) -> HashView:
    """Real hashes for staff reviewing another project's job, and for anyone once ``released``
    (the files' bytes are theirs then; the download's digest headers carry the hash);
    handles for everyone else."""
    real = released or sees_raw_output_names(session, principal, project_id)
    return HashView(job_id, handle_key(keys_dir), keyed=not real)


def placeholder_of(keys_dir: Path, job_id: str, sha256: str) -> str:
    """The placeholder of job ``job_id``'s output with hash ``sha256`` (`placeholder`)."""
    return placeholder(output_handle(handle_key(keys_dir), job_id, sha256))


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


def resolve_recorded(
    session: Session, keys_dir: Path, job_id: str, wanted: str, *, real_hashes: bool
) -> JobOutput | None:
    """The recorded output of ``job_id`` that an egress request means by ``wanted``: the path
    itself, ``#<index>`` or ``sha256:<hex>`` (the first in index order with that handle, or,
    when the caller sees ``real_hashes``, that hash); None when nothing matches.

    A researcher's ``sha256:`` is matched against handles only: accepting a real hash they
    were never shown would answer "does this job have an output with this content?", a
    guessing oracle, so a real hash is refused exactly like an unknown handle."""
    order = index_order(session, keys_dir, job_id)
    index: int | None = None
    if m := _BY_INDEX.match(wanted):
        index = int(m.group(1))
    elif m := _BY_HASH.match(wanted):
        handle = m.group(1)
        if handle not in order.by_handle and real_hashes:
            handle = output_handle(handle_key(keys_dir), job_id, handle)
        index = order.by_handle.get(handle)
    else:
        query = select(JobOutput).where(JobOutput.job_id == job_id, JobOutput.path == wanted)
        return session.scalars(query.order_by(JobOutput.id).limit(1)).first()
    rows = [] if index is None else _rows_by_id(session, order.ids[index : index + 1])
    return rows[0] if rows else None


def masked_record(
    record: dict[str, Any], files: list[EgressFile], names: NameView, hashes: HashView
) -> dict[str, Any]:
    """The disclosure record as a caller may see it: withheld names replaced by placeholders
    (and their checks dropped), files in handle order so that order spells nothing; and, for a
    researcher before release (``hashes.keyed``), each hash replaced by its handle."""
    withheld = any(not names.shows(f.path) for f in files)
    if not withheld and not hashes.keyed:
        return record
    by_path = {f.path: f for f in files}
    shown: list[tuple[str, dict[str, Any]]] = []
    for entry in record.get("files", []):
        f = by_path.get(entry.get("path", ""))
        real = entry.get("sha256")
        order = hashes.handle(real) if isinstance(real, str) else ""
        if hashes.keyed and isinstance(real, str):
            entry = {**entry, "sha256": order, "sha256_keyed": True}
        if f is not None and not names.shows(f.path):
            entry = {**entry, "path": hashes.placeholder(f.sha256), "checks": [], "name_withheld": True}
        shown.append((order, entry))
    if withheld:  # by handle: the real hashes' order would spell log2(n!) bits
        shown.sort(key=lambda pair: pair[0])
    masked = {**record, "files": [entry for _, entry in shown]}
    if withheld:
        masked["masked_for_researcher"] = True
    if hashes.keyed:
        masked["hashes_keyed"] = True
    return masked


def rounded_sizes(record: dict[str, Any]) -> dict[str, Any]:
    """The disclosure record with every file's size rounded up (`tre.jobs.shown_size`)."""
    files = [
        {**e, "size": rounded_size(e["size"]), "size_rounded": True} if isinstance(e.get("size"), int) else e
        for e in record.get("files", [])
    ]
    return {**record, "files": files}
