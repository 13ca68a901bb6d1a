"""The airlock's workflow: who may move a request, and when (the moves themselves are
`tre.states.EGRESS_TRANSITIONS`, made only through `_move`).

A request is checked, then blocked (final) or awaiting blind votes by DAC members; all
required votes in and unanimous approve or reject it, disagreeing votes make it conflicted,
and one resolution (a DAC member who did not vote, or an admin; never the requester) settles
a conflict.

Rules that hold in every transition: the requester and the job's submitter never review their
own release; a reviewer votes once; votes stay blind until every required vote is in. The
API and the panel only call these functions, so the rules cannot differ between them.

Every step is written to the audit log in the caller's transaction. Refusals that matter for
security (self-review, tampered files) are audited too, but not in that transaction, which is
rolled back whole: the error carries its entry (`tre.errors.TreError.refusals`) and whoever
ends the unit of work writes it after the rollback (`tre.store.db.settle`; the API keeps it on
disk when the store cannot take it then). A caller that catches one and answers normally hands
the entry on with `tre.store.db.note_refusals`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from egress_review import checking, logged_decision, model_sandbox, outputnames, quoted, releases
from egress_review.checks.released import aggregates_of
from egress_review.disclosure import build_record, record_digest
from egress_review.joblog import job_log_screen
from egress_review.staging import (
    HashMismatch,
    StagedFile,
    StagingBatch,
    StagingError,
    open_verified,
    output_file,
)
from tre import committees
from tre.access import (
    OVERSIGHT_ROLES,
    STAFF_ROLES,
    former_project_ids,
    is_member,
    sees_raw_output_names,
    user_project_ids,
)
from tre.audit import AuditEvent, record_events
from tre.auth.principal import Principal
from tre.committees import quorum_shortfall
from tre.config import Settings
from tre.errors import Conflict, Forbidden, NotFound, PolicyUnavailable, TreError, Unprocessable
from tre.jobs.output_handles import handle_key
from tre.jobs.shown_size import shown_size
from tre.policy import AppliedPolicy, FileRules, Policy, policies_for_datasets
from tre.registry import grant_status
from tre.states import (
    EGRESS_TRANSITIONS,
    FINAL_EGRESS_STATES,
    OPEN_EGRESS_STATES,
    CheckOutcome,
    EgressState,
    ReviewStage,
    Vote,
    check_move,
)
from tre.store.base import utcnow
from tre.store.models import (
    DatasetReviewer,
    EgressFile,
    EgressRequest,
    EgressRequestDataset,
    Job,
    JobOutput,
    JobState,
    ProjectMember,
    Review,
)

VOTES = tuple(v.value for v in Vote)
OPEN_STATES = tuple(s.value for s in OPEN_EGRESS_STATES)
FINAL_STATES = tuple(s.value for s in FINAL_EGRESS_STATES)
MAX_FILES = 1000
MAX_WITHDRAW_REASON = 2000


# ---------------------------------------------------------------------------- look-ups


def can_view(session: Session, req: EgressRequest, principal: Principal) -> bool:
    """Admins and auditors see every request; members of its project see it as researchers; a
    DAC member only when they sit on the committee of one of its datasets (`tre.committees`;
    a request whose job read no dataset is the platform DAC's: every DAC member's)."""
    if principal.has(*OVERSIGHT_ROLES) or is_member(session, req.project_id, principal.user_id):
        return True
    return principal.has("dac") and on_committee(session, req, principal.user_id)


def on_committee(session: Session, req: EgressRequest, user_id: str, *, every: bool = False) -> bool:
    """Whether ``user_id`` sits on the committee of one of the request's datasets (``every``:
    of all of them). A request over no dataset is reviewed by every DAC member."""
    return _covers(req, committees.reviewer_dataset_ids(session, user_id), every=every)


def _covers(req: EgressRequest, mine: frozenset[str], *, every: bool) -> bool:
    """The committee rule itself, on the datasets whose committees the user sits on."""
    wanted = set(req.dataset_ids)
    if not wanted:
        return True
    return wanted <= mine if every else bool(wanted & mine)


def load_request(session: Session, request_id: str, *, lock: bool = False) -> EgressRequest:
    stmt = (
        select(EgressRequest)
        .where(EgressRequest.id == request_id)
        .options(
            selectinload(EgressRequest.files),
            selectinload(EgressRequest.reviews),
            selectinload(EgressRequest.dataset_links),
        )
    )
    if lock:
        # Serialises concurrent votes on PostgreSQL; SQLite already runs BEGIN IMMEDIATE.
        stmt = stmt.with_for_update()
    req = session.scalars(stmt).one_or_none()
    if req is None:
        raise _not_found(f"egress request {request_id}")
    return req


def visible_request(
    session: Session, request_id: str, principal: Principal, *, lock: bool = False
) -> EgressRequest:
    req = load_request(session, request_id, lock=lock)
    if not can_view(session, req, principal):
        raise _not_found(f"egress request {request_id}")
    return req


@dataclass(frozen=True)
class RequestFilter:
    """What a list of requests is narrowed to, beyond what its viewer may see at all (the
    API's list, the panel's queue tabs, filters and pages)."""

    states: tuple[str, ...] = ()
    id_prefix: str | None = None
    made_before: datetime | None = None  # older than an age, or about to expire
    dataset_id: str | None = None  # requests over this dataset (its job read it)
    reviewed_by: str | None = None  # requests this user voted on or resolved (their history)


def _visible(principal: Principal, f: RequestFilter) -> list[Any]:
    """The WHERE clauses: what ``principal`` may see, narrowed by ``f``."""
    where: list[Any] = []
    if not principal.has(*OVERSIGHT_ROLES):
        # Deny by default: a researcher's projects' requests, and a DAC member's committees'.
        projects = select(ProjectMember.project_id).where(ProjectMember.user_id == principal.user_id)
        seen = [EgressRequest.project_id.in_(projects)]
        if principal.has("dac"):
            reviewed = select(EgressRequestDataset.request_id).join(
                DatasetReviewer, DatasetReviewer.dataset_id == EgressRequestDataset.dataset_id
            )
            seen.append(EgressRequest.id.in_(reviewed.where(DatasetReviewer.user_id == principal.user_id)))
            seen.append(~EgressRequest.id.in_(select(EgressRequestDataset.request_id)))
        where.append(or_(*seen))
    if f.states:
        where.append(EgressRequest.state.in_(f.states))
    if f.id_prefix:
        where.append(EgressRequest.id.startswith(f.id_prefix, autoescape=True))
    if f.made_before is not None:
        where.append(EgressRequest.created_at < f.made_before)
    if f.dataset_id is not None:
        over = select(EgressRequestDataset.request_id).where(EgressRequestDataset.dataset_id == f.dataset_id)
        where.append(EgressRequest.id.in_(over))
    if f.reviewed_by is not None:
        where.append(
            EgressRequest.id.in_(select(Review.request_id).where(Review.reviewer_id == f.reviewed_by))
        )
    return where


def list_requests(
    session: Session,
    principal: Principal,
    state: str | tuple[str, ...] | None = None,
    limit: int = 200,
    id_prefix: str | None = None,
    made_before: datetime | None = None,
    *,
    narrow: RequestFilter | None = None,
    oldest_first: bool = False,
    offset: int = 0,
) -> list[EgressRequest]:
    """The requests ``principal`` may see, newest first (or oldest), ``offset`` rows on;
    ``made_before`` keeps those made before then (the ones about to expire:
    `expiry.made_before_for_expiring`); ``narrow`` adds the panel's filters."""
    f = narrow or RequestFilter()
    states = (state,) if isinstance(state, str) else tuple(state or ())
    f = RequestFilter(
        states=states or f.states,
        id_prefix=id_prefix or f.id_prefix,
        made_before=made_before or f.made_before,
        dataset_id=f.dataset_id,
        reviewed_by=f.reviewed_by,
    )
    order = EgressRequest.created_at.asc() if oldest_first else EgressRequest.created_at.desc()
    stmt = (
        select(EgressRequest)
        .options(
            selectinload(EgressRequest.files),
            selectinload(EgressRequest.reviews),
            selectinload(EgressRequest.dataset_links),
        )
        .where(*_visible(principal, f))
        .order_by(order, EgressRequest.id)
        .offset(offset)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def count_requests(session: Session, principal: Principal, narrow: RequestFilter) -> int:
    """How many requests ``principal`` may see under ``narrow`` (one statement)."""
    stmt = select(func.count()).select_from(EgressRequest).where(*_visible(principal, narrow))
    return int(session.scalar(stmt) or 0)


def expires_at(req: EgressRequest, ttl_days: float) -> datetime | None:
    """When an open request expires (UTC; `egress_review.expiry` sweeps it then, within a
    minute); None for a final one, or when requests never expire (``ttl_days`` 0)."""
    if ttl_days <= 0 or req.state not in OPEN_STATES or req.created_at is None:
        return None
    created = req.created_at if req.created_at.tzinfo else req.created_at.replace(tzinfo=UTC)
    return created + timedelta(days=ttl_days)


def _not_found(what: str) -> NotFound:
    return NotFound(f"{what} does not exist or is not visible to you")


def _move(req: EgressRequest, target: EgressState) -> None:
    """The only way a request changes state: refused unless the transition table allows it."""
    req.state = check_move(EGRESS_TRANSITIONS, EgressState(req.state), target).value


def review_votes(req: EgressRequest) -> list[Review]:
    return [r for r in req.reviews if r.stage == ReviewStage.review]


def _no_unseen_release(session: Session, principal: Principal, req: EgressRequest, action: str) -> None:
    """Refuse (audited) an approval while a request of the same project released after this
    one was checked states counts a few off this one's (`releases.released_since`). The
    project's lock is taken here and held to the end of the approval, so two requests that
    each passed the checks before the other's release cannot both be released unseen."""
    releases.lock_project(session, req.project_id)
    unseen = releases.released_since(session, req)
    if not unseen:
        return
    raise _refuse(
        principal,
        req,
        Conflict,
        "Released since checked",
        f"request {unseen[0]} of this project was released after this request was checked, and "
        "counts in the two differ by less than the policy's threshold (differencing across "
        "releases): it cannot be approved. Reject it; the requester can ask again, and the checks "
        "then show the reviewers which counts differ",
        "released-since-checked",
        action,
    )


def _event(
    actor: str,
    action: str,
    req: EgressRequest | None = None,
    job_id: str | None = None,
    project_id: str | None = None,
    **details: Any,
) -> AuditEvent:
    if req is not None:
        details = {"request_id": req.id, **details}
    return AuditEvent(
        actor,
        action,
        project_id=req.project_id if req is not None else project_id,
        job_id=req.job_id if req is not None else job_id,
        details=details,
    )


def _audit(
    session: Session,
    actor: str,
    action: str,
    req: EgressRequest | None = None,
    job_id: str | None = None,
    project_id: str | None = None,
    **details: Any,
) -> None:
    record_events(session, [_event(actor, action, req, job_id, project_id, **details)])


def _refuse(
    principal: Principal,
    req: EgressRequest,
    error: type[TreError],
    title: str,
    detail: str,
    slug: str,
    action: str = "egress.refused",
) -> TreError:
    """The error for the caller to raise, carrying its audit entry (`TreError.refusals`):
    written after the unit of work is rolled back, never in it (see the module doc)."""
    entry = _event(principal.user_id, action, req, reason=slug, detail=detail)
    return error(detail, slug=slug, title=title, refusals=(entry,))


# ---------------------------------------------------------------------------- request


def create_request(
    session: Session,
    settings: Settings,
    principal: Principal,
    *,
    job_id: str,
    paths: list[str],
    justification: str,
) -> EgressRequest:
    """Freeze the chosen outputs, check them, and open the request for review (or block it),
    all in ``session``."""
    write = prepare_request(
        session, settings, principal, job_id=job_id, paths=paths, justification=justification
    )
    return write(session)


def prepare_request(
    session: Session,
    settings: Settings,
    principal: Principal,
    *,
    job_id: str,
    paths: list[str],
    justification: str,
) -> Callable[[Session], EgressRequest]:
    """Everything of `create_request` but its writes: who may ask for what, then the slow part
    (copying, hashing, scanning the datasets for identifiers, running the checks, OCR). Returns
    the function that records the request in a session.

    Why apart: only reads happen here, so the API runs it in a read-only snapshot and writes
    in a short unit of work afterwards. Run in a writing transaction, the checks held the
    process's write gate (and SQLite's writer lock) for their whole time: the OCR of a few
    figures took over 30 s on a loaded machine, and meanwhile the worker's rounds and every
    other writer of the API failed with "database busy" (the demo's airlock step timed out).
    Audit records of refusals here go where ``session`` sends them (deferred in a snapshot).
    """
    justification = justification.strip()
    if not justification:
        raise Unprocessable("a justification is required", slug="missing-justification")
    wanted = list(dict.fromkeys(p.strip() for p in paths if p.strip()))
    if not wanted:
        raise Unprocessable("name at least one output file", slug="no-files")
    if len(wanted) > MAX_FILES:
        raise Unprocessable(f"at most {MAX_FILES} files per request", slug="too-many-files")
    job = session.get(Job, job_id)
    if job is None:
        raise _not_found(f"job {job_id}")
    project_id = job.project_id
    if not is_member(session, project_id, principal.user_id):
        # The same answer as for an unknown id: job ids of other projects are not an oracle.
        raise _not_found(f"job {job_id}")
    if job.state != JobState.succeeded.value:
        raise Conflict(
            f"job {job_id} is {job.state}; only outputs of a succeeded job can be released",
            slug="job-not-succeeded",
        )
    for dataset_id in job.governing_dataset_ids:
        # Outputs derived from data whose grant was since revoked (or lapsed) stay inside;
        # also data the job read through an earlier job's outputs (its lineage).
        status = grant_status(session, project_id, dataset_id)
        if status != "active":
            state = status if status != "none" else "missing"
            raise Forbidden(
                f"project {project_id}'s access grant for dataset {dataset_id} is {state}; "
                "outputs derived from it cannot be released",
                slug="grant-not-active",
            )
    # A file may be named by path, by index (#3) or by hash (sha256:...): researchers who may
    # not see the names (egress_review.outputnames) still name what they want released; by
    # the handle they were shown, never by a real hash (a guessing oracle). One lookup per
    # named file in the job's kept index order: a cohort job has tens of thousands of outputs.
    real_hashes = sees_raw_output_names(session, principal, project_id)
    found = {
        w: outputnames.resolve_recorded(session, settings.keys_dir, job_id, w, real_hashes=real_hashes)
        for w in wanted
    }
    datasets = checking.job_datasets(session, job)
    applied = policies_for_datasets(datasets, settings.resolved_policies_dir)
    names = _withheld_paths_unknown(session, settings, principal, job_id, found)
    resolved = {w: (o.path if o is not None else None) for w, o in found.items()}
    outputs = {o.path: (o.sha256, o.size) for o in found.values() if o is not None}
    unknown = [w for w, p in resolved.items() if p is None]
    if unknown:
        verb = "is not a recorded output" if len(unknown) == 1 else "are not recorded outputs"
        raise Unprocessable(
            f"{len(unknown)} of the named files {verb} of job {job_id} "
            "(name them by path, #index or sha256:hash as `tre outputs` lists them)",
            slug="not-a-job-output",
            title="Not a job output",
        )
    wanted = list(dict.fromkeys(p for p in resolved.values() if p is not None))
    _within_request_limits(applied, [outputs[p][1] for p in wanted])

    # Freeze first, before any row is written: a refusal then leaves only its audit record.
    # All or nothing: a file refused, or the disk filling up, part-way keeps none of them.
    with StagingBatch(settings.staging_dir) as batch:
        for path in wanted:
            sha256, size = outputs[path]
            try:
                batch.add(output_file(settings.jobs_dir, job_id, path), sha256, size)
            except StagingError as exc:
                slug = "output-modified" if isinstance(exc, HashMismatch) else "output-unavailable"
                entry = _event(
                    principal.user_id,
                    "egress.stage_refused",
                    job_id=job_id,
                    project_id=project_id,
                    path=path,
                    reason=slug,
                    detail=str(exc),
                    recorded_sha256=sha256,
                )
                # The file as the requester knows it, and fixed words: a withheld name must not
                # come back in the refusal (nor in the staging error, which quotes the file).
                shown = (
                    path
                    if names.shows(path)
                    else outputnames.placeholder_of(settings.keys_dir, job_id, sha256)
                )
                why = (
                    "it changed after the job recorded it (its size or SHA-256 differs)"
                    if isinstance(exc, HashMismatch)
                    else "it is no longer the regular file the job recorded"
                )
                raise Conflict(
                    f"{shown}: {why}; it cannot be released",
                    slug=slug,
                    title="Output cannot be frozen",
                    refusals=(entry,),  # written after the rollback (see the module doc)
                ) from exc
        staged: list[tuple[str, StagedFile]] = list(zip(wanted, batch.publish(), strict=True))
    context = checking.make_context(
        checking.identifiers_for(datasets, applied),
        len(staged),
        sum(f.size for _, f in staged),
        datasets,
        {path: f.sha256 for path, f in staged},
        {path: f.path for path, f in staged},
        RecordedOutputs(session, settings, job_id),
        model_sandbox.sandbox_for(settings),
        released=releases.released_for(session, project_id),
    )
    results = {path: checking.check_file(f.path, path, applied, context) for path, f in staged}
    # What the results quote from the files is shown to the requester: screened like the log.
    screen, _ = job_log_screen(session, settings, job)
    results = quoted.screened_results(results, screen)

    governing = list(job.governing_dataset_ids)
    # the counts the files state: compared with this project's later requests once released
    reading = applied[0].policy if applied else Policy(name="default", version="0")
    aggregates = {path: aggregates_of(f.path, path, reading, context) for path, f in staged}

    def write(s: Session) -> EgressRequest:
        req = EgressRequest(
            job_id=job_id,
            project_id=project_id,
            requested_by=principal.user_id,
            justification=justification,
            state=EgressState.checking.value,
            policy_name="+".join(p.name for p in applied)[:128],
            policy_version="+".join(p.describe()["version"] for p in applied)[:64],
            required_reviews=checking.required_reviews(applied),
        )
        for dataset_id in governing:
            req.dataset_links.append(EgressRequestDataset(dataset_id=dataset_id))
        for path, frozen in staged:
            req.files.append(
                EgressFile(
                    path=path,
                    sha256=frozen.sha256,
                    size=frozen.size,
                    staged_path=str(frozen.path),
                    outcome=checking.worst_outcome([r["outcome"] for r in results[path]]),
                    checks=results[path],
                )
            )
        s.add(req)
        s.flush()
        releases.store(
            s,
            req,
            aggregates,
            max([10, *(ap.policy.sdc.threshold for ap in applied)]),
        )
        _audit(
            s,
            principal.user_id,
            "egress.requested",
            req,
            files=[f.path for f in req.files],
            justification=justification,
            policies=[p.describe() for p in applied],
        )
        for f in req.files:
            _audit(s, "system", "egress.staged", req, path=f.path, sha256=f.sha256, size=f.size)
        _record_checks(s, req)
        return req

    return write


def _withheld_paths_unknown(
    session: Session,
    settings: Settings,
    principal: Principal,
    job_id: str,
    found: dict[str, JobOutput | None],
) -> outputnames.NameView:
    """The requester's view of the job's names; a file named by a path the requester may not
    see is dropped from ``found`` (in place), so it is refused exactly like a path the job never
    wrote. Otherwise a guessed path (a patient's name the job wrote as a file name) would be
    confirmed by the request being opened, one guess at a time."""
    names = outputnames.request_name_view(session, settings, principal, job_id)
    for wanted, output in found.items():
        if output is not None and outputnames.names_a_path(wanted) and not names.shows(output.path):
            found[wanted] = None
    return names


def _within_request_limits(applied: list[AppliedPolicy], sizes: list[int]) -> None:
    """Refuse, before anything is copied, a request over the policies' file count or total
    size (known from the recorded sizes). Checked only after freezing, a request for 1,000 of
    a cohort's files was copied into staging and checked file by file (up to 1,000 x
    ``max_file_bytes`` of staging disk), all to be blocked by the ``limits`` check."""
    rules = [ap.policy.files for ap in applied] or [FileRules()]
    most_files = min(r.max_files for r in rules)
    most_bytes = min(r.max_total_bytes for r in rules)
    if len(sizes) > most_files or sum(sizes) > most_bytes:
        raise Unprocessable(
            f"this request names {len(sizes)} files of {sum(sizes)} bytes in all; the datasets' policy "
            f"allows at most {most_files} files and {most_bytes} bytes per request: ask for fewer",
            slug="request-over-limits",
            title="Request over the policy's limits",
        )


class RecordedOutputs(Mapping[str, tuple[Path, str]]):
    """The job's recorded outputs (file, SHA-256) by path, looked up one at a time: a model
    card and the tables it names are read from here and verified against the recorded hash
    (`checks.model_card`). Built eagerly this resolved every one of a cohort's 50,000 paths
    on the disk for each request, to read at most a few."""

    def __init__(self, session: Session, settings: Settings, job_id: str) -> None:
        self._session, self._settings, self._job_id = session, settings, job_id

    def __getitem__(self, path: str) -> tuple[Path, str]:
        row = self._session.scalars(
            select(JobOutput).where(JobOutput.job_id == self._job_id, JobOutput.path == path)
        ).first()
        if row is None:
            raise KeyError(path)
        try:
            return output_file(self._settings.jobs_dir, self._job_id, row.path), row.sha256
        except StagingError as exc:
            raise KeyError(path) from exc

    def __iter__(self) -> Iterator[str]:
        return iter(self._session.scalars(select(JobOutput.path).where(JobOutput.job_id == self._job_id)))

    def __len__(self) -> int:
        return outputnames.output_stamp(self._session, self._job_id)[0]


def _record_checks(session: Session, req: EgressRequest) -> None:
    """Audit every check result (one batch) and move the request out of ``checking``."""
    events = [
        AuditEvent(
            "system",
            "egress.check",
            req.project_id,
            None,
            req.job_id,
            {
                "request_id": req.id,
                "path": f.path,
                "sha256": f.sha256,
                "policy": r["policy"],
                "check": r["check"],
                "outcome": r["outcome"],
                "reason": r["reason"],
            },
        )
        for f in req.files
        for r in f.checks
    ]
    # One batch: one lock and one signed checkpoint for all results, not one per check.
    if events:
        record_events(session, events)
    overall = checking.worst_outcome([f.outcome for f in req.files])
    if overall == CheckOutcome.block:
        _move(req, EgressState.blocked)
        req.decided_at = utcnow()
        _finalise(session, req, "system")
    else:
        _move(req, EgressState.awaiting_review)
    _audit(session, "system", "egress.checked", req, state=req.state, outcome=overall)


def _finalise(
    session: Session, req: EgressRequest, actor: str, withdrawal: dict[str, Any] | None = None
) -> None:
    """Write the disclosure record of a final state and bind it into the audit log."""
    session.flush()
    session.refresh(req, attribute_names=["reviews"])
    record = build_record(req, withdrawal)
    req.disclosure_record = record
    approved = req.state == EgressState.approved
    if approved:
        releases.mark_released(session, req)
    action = "egress.released" if approved else "egress.closed"
    _audit(
        session,
        actor,
        action,
        req,
        state=req.state,
        disclosure_sha256=record_digest(record),
        files={f.path: f.sha256 for f in req.files} if approved else None,
    )


# ---------------------------------------------------------------------------- review


@dataclass(frozen=True)
class ViewerFacts:
    """What the views of many requests ask per request, fetched once for the whole list (see
    `viewer_facts`): the projects the viewer belongs to and the requests' jobs."""

    member_of: frozenset[str]
    jobs: dict[str, Job]
    former_member_of: frozenset[str] = frozenset()
    # The datasets on whose committees the viewer sits (`tre.committees`).
    reviews_datasets: frozenset[str] = frozenset()


def viewer_facts(session: Session, reqs: list[EgressRequest], principal: Principal) -> ViewerFacts:
    """Two statements for a list of requests instead of two per request (the queue's N+1)."""
    job_ids = {r.job_id for r in reqs}
    jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(job_ids)))} if job_ids else {}
    return ViewerFacts(
        frozenset(user_project_ids(session, principal.user_id)),
        jobs,
        former_project_ids(session, principal.user_id),
        committees.reviewer_dataset_ids(session, principal.user_id),
    )


def _on_committee(
    session: Session, req: EgressRequest, user_id: str, facts: ViewerFacts | None, *, every: bool = False
) -> bool:
    if facts is None:
        return on_committee(session, req, user_id, every=every)
    return _covers(req, facts.reviews_datasets, every=every)


def _member(session: Session, project_id: str, user_id: str, facts: ViewerFacts | None) -> bool:
    return project_id in facts.member_of if facts is not None else is_member(session, project_id, user_id)


def _reviewer_conflicts(
    session: Session, req: EgressRequest, principal: Principal, facts: ViewerFacts | None = None
) -> str | None:
    if principal.user_id == req.requested_by:
        return "you requested this release; requesters never review their own requests"
    job = facts.jobs.get(req.job_id) if facts is not None else session.get(Job, req.job_id)
    if job is not None and principal.user_id == job.submitted_by:
        return "you submitted the job that produced these files; you cannot review their release"
    if _member(session, req.project_id, principal.user_id, facts):
        return (
            f"you are a member of project {req.project_id}; releases are reviewed by DAC members "
            "independent of the project"
        )
    former = facts.former_member_of if facts is not None else former_project_ids(session, principal.user_id)
    if req.project_id in former:
        return (
            f"you were a member of project {req.project_id}; releases are reviewed by DAC members "
            "independent of the project, also after leaving it"
        )
    return None


# Fixed words (nothing a job or a requester controls): what the DAC and the requester are
# told when a request can never be decided by votes, and when it expired.
QUORUM_UNMEETABLE = (
    "This request cannot reach its quorum: a committee that must review it has fewer able, "
    "independent reviewers than its policy requires. An administrator must assign reviewers "
    "(tre admin dac assign); until then it can only be rejected, withdrawn, or left to expire."
)
EXPIRED_REASON = (
    "No decision was reached within the review time; the request expired. Ask again with a new "
    "request (tre egress request): the files are checked under the rules in force then."
)
POLICY_CHANGED = (
    "The datasets' policy changed since this request's checks ran: it cannot be approved as it "
    "stands. Reviewers: reject it. Requester: withdraw it and ask again (tre egress request), so "
    "the files are checked under the current policy."
)
POLICY_UNAVAILABLE = (
    "A policy of the job's datasets cannot be loaded now: nothing can be approved until an "
    "administrator fixes it."
)


def quorum_reached(session: Session, req: EgressRequest, votes: list[Review]) -> bool:
    """Whether every committee has its quorum: for each of the request's datasets, at least
    ``required_reviews`` votes by members of that dataset's committee (one vote counts for
    each committee its reviewer sits on). Strictest wins: a request over datasets A and B is
    decided only when A's committee and B's committee have each reached it."""
    voters = {r.reviewer_id for r in votes}
    if not req.dataset_ids:
        return len(voters) >= req.required_reviews
    return all(
        len(voters & set(committees.committee(session, d))) >= req.required_reviews for d in req.dataset_ids
    )


def review_conflict(session: Session, req: EgressRequest, principal: Principal) -> str | None:
    """Why ``principal`` may not review ``req`` (None: they may): see `_reviewer_conflicts`."""
    return _reviewer_conflicts(session, req, principal)


def policy_drift(session: Session, req: EgressRequest, policies_dir: Path) -> str | None:
    """Why the request's checks are no longer the rules in force (None: they are).

    A request is checked once, when it is made, under the policies of every dataset the job
    read; each result records the policy's name and digest (the exact text). Before a request
    may be approved, the policies in force now (the datasets' policy names, the files' text)
    must be those same ones: a DAC that tightens a policy, raises its ``required_reviews``,
    or moves a dataset to another policy while a request waits has made the old checks and
    the old number of reviews say nothing about the new rules. Returns fixed words with the
    policy names only (a loader error could quote the file)."""
    job = session.get(Job, req.job_id)
    datasets = checking.job_datasets(session, job) if job is not None else []
    checked = {(p["name"], p["digest"]) for p in checking.policies_of(req.files)}
    try:
        now = {(ap.name, ap.describe()["digest"]) for ap in policies_for_datasets(datasets, policies_dir)}
    except PolicyUnavailable:
        return "unavailable"
    if now == checked:
        return None
    was = ", ".join(sorted(name for name, _ in checked)) or "none"
    changed = ", ".join(sorted({name for name, _ in now ^ checked}))
    return f"checked under {was}; changed since: {changed}"


def _rules_still_in_force(
    session: Session, principal: Principal, req: EgressRequest, policies_dir: Path, action: str
) -> None:
    """Refuse (audited) an approval of a request whose checks are not the rules in force.
    Rejections stay allowed, so a request checked under old rules can always be closed."""
    drift = policy_drift(session, req, policies_dir)
    if drift is None:
        return
    if drift == "unavailable":
        raise _refuse(
            principal,
            req,
            Conflict,
            "Policy unavailable",
            "a policy of the job's datasets cannot be loaded now; nothing can be approved until "
            "an administrator fixes it (`python -m tre.policy check`)",
            "policy-unavailable",
            action,
        )
    raise _refuse(
        principal,
        req,
        Conflict,
        "Policy changed",
        f"the datasets' policies changed since this request was checked ({drift}), so its checks "
        "and its number of required reviews are not the rules in force: it cannot be approved. "
        "Reject it; the requester can ask again, and the files are checked under the current rules",
        "policy-changed",
        action,
    )


def cast_vote(
    session: Session,
    principal: Principal,
    request_id: str,
    *,
    vote: str,
    comment: str = "",
    policies_dir: Path,
) -> EgressRequest:
    """One blind vote by a DAC member; the last required vote decides the request.

    ``policies_dir`` is where the policies in force are read: an approval is refused while
    they differ from those the request was checked under (`_rules_still_in_force`)."""
    if vote not in VOTES:
        raise Unprocessable("vote must be 'approve' or 'reject'", slug="invalid-vote")
    if not principal.has("dac"):
        raise Forbidden("only data access committee members (role dac) vote on releases", slug="missing-role")
    req = visible_request(session, request_id, principal, lock=True)
    why = _reviewer_conflicts(session, req, principal)
    if why:
        raise _refuse(
            principal,
            req,
            Forbidden,
            "Self-review refused",
            why,
            "self-review",
            "egress.vote_refused",
        )
    if req.state == EgressState.blocked:
        raise Conflict(
            "the automated checks blocked this request; it cannot be approved", slug="request-blocked"
        )
    if req.state == EgressState.conflicted:
        raise Conflict(
            "the votes disagree; this request now needs a resolution, not another vote: by a "
            "DAC member who did not vote, or an admin (tre egress resolve, or Resolve in the panel)",
            slug="needs-resolution",
        )
    if req.state != EgressState.awaiting_review:
        raise Conflict(f"this request is {req.state}; voting is closed", slug="voting-closed")
    if not on_committee(session, req, principal.user_id):
        raise _refuse(
            principal,
            req,
            Forbidden,
            "Not on the committee",
            "you do not sit on the committee of any dataset this request is over",
            "not-on-committee",
            "egress.vote_refused",
        )
    votes = review_votes(req)
    if any(r.reviewer_id == principal.user_id for r in votes):
        raise Conflict(
            "you have already voted on this request; votes cannot be changed", slug="already-voted"
        )
    unlogged = logged_decision.unlogged_votes(session, req, votes)
    if unlogged is not None:  # a vote written into the table behind the log must not count
        raise _refuse(
            principal,
            req,
            Conflict,
            "Votes not in the audit log",
            f"{unlogged}: your vote was not counted; an admin must compare the request with the audit log",
            "votes-not-in-audit-log",
            "egress.vote_refused",
        )
    if vote == Vote.approve:
        _rules_still_in_force(session, principal, req, policies_dir, "egress.vote_refused")
        _no_unseen_release(session, principal, req, "egress.vote_refused")

    req.reviews.append(
        Review(
            reviewer_id=principal.user_id, stage=ReviewStage.review.value, vote=vote, comment=comment.strip()
        )
    )
    session.flush()
    votes = review_votes(req)
    _audit(
        session,
        principal.user_id,
        "egress.vote",
        req,
        vote=vote,
        comment=comment.strip(),
        votes_in=len(votes),
        required=req.required_reviews,
    )
    if quorum_reached(session, req, votes):
        outcomes = {Vote(r.vote) for r in votes}
        if outcomes == {Vote.approve}:
            _move(req, EgressState.approved)
        elif outcomes == {Vote.reject}:
            _move(req, EgressState.rejected)
        else:
            _move(req, EgressState.conflicted)
        _audit(
            session,
            "system",
            "egress.decided",
            req,
            state=req.state,
            votes={r.reviewer_id: r.vote for r in votes},
        )
        if req.state != EgressState.conflicted:
            req.decided_at = utcnow()
            _finalise(session, req, "system")
    return req


def resolve(
    session: Session,
    principal: Principal,
    request_id: str,
    *,
    decision: str,
    comment: str,
    policies_dir: Path,
) -> EgressRequest:
    """Settle a conflicted request: a DAC member who did not vote, or an admin (an approval
    only under the policies the request was checked under, as for a vote)."""
    if decision not in VOTES:
        raise Unprocessable("decision must be 'approve' or 'reject'", slug="invalid-vote")
    if not principal.has("dac", "admin"):
        raise Forbidden("only a DAC member or an admin can resolve a conflicted request", slug="missing-role")
    if not comment.strip():
        raise Unprocessable("a resolution needs a comment saying why", slug="missing-comment")
    req = visible_request(session, request_id, principal, lock=True)
    why = _reviewer_conflicts(session, req, principal)
    if why:
        raise _refuse(
            principal,
            req,
            Forbidden,
            "Self-review refused",
            why,
            "self-review",
            "egress.resolution_refused",
        )
    if req.state != EgressState.conflicted:
        raise Conflict(
            f"this request is {req.state}; only conflicted requests need a resolution", slug="not-conflicted"
        )
    if not principal.has("admin") and not on_committee(session, req, principal.user_id, every=True):
        # Strictest wins: one committee's member does not settle another committee's data.
        raise _refuse(
            principal,
            req,
            Forbidden,
            "Not on every committee",
            "a conflict over several datasets is settled by a member of every one of their "
            "committees, or by an admin",
            "not-on-committee",
            "egress.resolution_refused",
        )
    if any(r.reviewer_id == principal.user_id for r in review_votes(req)):
        raise _refuse(
            principal,
            req,
            Forbidden,
            "Resolver already voted",
            "you voted on this request; a conflict is settled by a DAC member of its committee "
            "who did not vote, or by an admin (tre egress resolve, or Resolve in the panel)",
            "resolver-voted",
            "egress.resolution_refused",
        )
    why = logged_decision.unlogged_conflict(session, req)
    if why is not None:
        raise _refuse(
            principal,
            req,
            Conflict,
            "Conflict not in the audit log",
            f"{why}: nothing was resolved; an admin must compare the request with the audit log",
            "decision-not-in-audit-log",
            "egress.resolution_refused",
        )
    if decision == Vote.approve:
        _rules_still_in_force(session, principal, req, policies_dir, "egress.resolution_refused")
        _no_unseen_release(session, principal, req, "egress.resolution_refused")
    req.reviews.append(
        Review(
            reviewer_id=principal.user_id,
            stage=ReviewStage.resolution.value,
            vote=decision,
            comment=comment.strip(),
        )
    )
    _move(req, EgressState.approved if decision == Vote.approve else EgressState.rejected)
    req.decided_at = utcnow()
    session.flush()
    _audit(
        session,
        principal.user_id,
        "egress.resolved",
        req,
        decision=decision,
        comment=comment.strip(),
        as_role="admin" if not principal.has("dac") else "dac",
    )
    _finalise(session, req, principal.user_id)
    return req


def withdraw(session: Session, principal: Principal, request_id: str, *, reason: str = "") -> EgressRequest:
    """The requester takes back an open request (awaiting review or conflicted): a file named
    by mistake, a wrong version. Final: the request can no longer be voted on, resolved or
    downloaded, and its disclosure record says who withdrew it and why.

    Only the researcher who made it, while still a member of its project (a colleague, a DAC
    member or an admin cannot: a reviewer ends a request by rejecting it). The row is locked
    like a vote's, so a withdrawal racing the last vote or a resolution loses or wins whole:
    one of them finds the request closed. Votes cast before the withdrawal stay blind for
    good (`disclosure.build_record`): withdrawing must not reveal how a reviewer voted."""
    if len(reason) > MAX_WITHDRAW_REASON:
        raise Unprocessable(f"a reason has at most {MAX_WITHDRAW_REASON} characters", slug="reason-too-long")
    req = visible_request(session, request_id, principal, lock=True)
    if (
        principal.user_id != req.requested_by
        or not principal.has("researcher")
        or not is_member(session, req.project_id, principal.user_id)
    ):
        raise _refuse(
            principal,
            req,
            Forbidden,
            "Not your request",
            "only the researcher who made this request, while a member of its project, can withdraw it",
            "not-the-requester",
            "egress.withdraw_refused",
        )
    if req.state not in (EgressState.awaiting_review, EgressState.conflicted):
        raise Conflict(
            f"this request is {req.state}; only a request awaiting review or a resolution can be withdrawn",
            slug="not-withdrawable",
        )
    _move(req, EgressState.withdrawn)
    req.decided_at = utcnow()
    votes_in = len(review_votes(req))
    _audit(session, principal.user_id, "egress.withdrawn", req, reason=reason.strip(), votes_in=votes_in)
    _finalise(session, req, principal.user_id, {"by": principal.user_id, "reason": reason.strip()})
    return req


def expire(session: Session, req: EgressRequest, clock: dict[str, str] | None = None) -> None:
    """Close an open request that waited past the review time (`egress_review.expiry`; the
    caller has locked the row and checked it is open and overdue). Final, with fixed words;
    votes cast so far stay blind for good, as for a withdrawal. ``clock``: which clock
    decided and what each read, kept in the audit entry."""
    _move(req, EgressState.expired)
    req.decided_at = utcnow()
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    _audit(
        session,
        "system",
        "egress.expired",
        req,
        reason="no-decision-in-time",
        votes_in=len(review_votes(req)),
        **extra,
    )
    _finalise(session, req, "system")


# ---------------------------------------------------------------------------- release


def open_release_file(
    session: Session, settings: Settings, principal: Principal, request_id: str, file_id: int
) -> tuple[EgressFile, BinaryIO]:
    """Hand an approved file to a member of the project, re-verified against its bound hash."""
    req = visible_request(session, request_id, principal)
    if not is_member(session, req.project_id, principal.user_id):
        raise _refuse(
            principal,
            req,
            Forbidden,
            "Forbidden",
            f"only members of project {req.project_id} may download its released files",
            "not-a-project-member",
            "egress.download_refused",
        )
    if req.state != EgressState.approved:
        raise _refuse(
            principal,
            req,
            Conflict,
            "Not released",
            f"this request is {req.state}; files can be downloaded only after approval",
            "not-approved",
            "egress.download_refused",
        )
    # Approval is not a standing licence: the project must still hold an unexpired, unrevoked
    # grant for every dataset the job read, at the moment of each download.
    job = session.get(Job, req.job_id)
    for dataset_id in job.governing_dataset_ids if job is not None else []:
        status = grant_status(session, req.project_id, dataset_id)
        if status != "active":
            state = status if status != "none" else "missing"
            raise _refuse(
                principal,
                req,
                Forbidden,
                "Grant no longer active",
                f"project {req.project_id}'s access grant for dataset {dataset_id} is {state}; "
                "released files derived from it can no longer be downloaded",
                "grant-not-active",
                "egress.download_refused",
            )
    f = next((x for x in req.files if x.id == file_id), None)
    if f is None:
        raise _not_found(f"file {file_id} of request {request_id}")
    why = logged_decision.unlogged_decision(session, req, f)
    if why is not None:
        raise _refuse(
            principal,
            req,
            Conflict,
            "Release not in the audit log",
            f"{why}: the download was refused; an admin must compare the request with the audit log",
            "release-not-in-audit-log",
            "egress.download_refused",
        )
    try:
        fh = open_verified(settings.staging_dir, f.sha256)
    except StagingError as exc:
        slug = "staged-file-altered" if isinstance(exc, HashMismatch) else "staged-file-missing"
        raise _refuse(
            principal,
            req,
            Conflict,
            "Release integrity failure",
            f"{f.path}: {exc}; the download was refused",
            slug,
            "egress.download_refused",
        ) from exc
    _audit(session, principal.user_id, "egress.downloaded", req, path=f.path, sha256=f.sha256, size=f.size)
    return f, fh


def logged_record(session: Session, principal: Principal, req: EgressRequest) -> dict[str, Any]:
    """The decided request's disclosure record, once the signed log shows that decision and
    that record (`logged_decision`): an edited record, or a state changed in the database,
    is refused, never served as the committee's."""
    if req.disclosure_record is None:
        raise Conflict(
            f"request {req.id} is {req.state}; the record is written when it is decided",
            slug="not-decided",
            title="No disclosure record yet",
        )
    why = logged_decision.unlogged_decision(session, req)
    if why is not None:
        raise _refuse(
            principal,
            req,
            Conflict,
            "Decision not in the audit log",
            f"{why}: the record was not served; an admin must compare the request with the audit log",
            "decision-not-in-audit-log",
            "egress.disclosure_refused",
        )
    return dict(req.disclosure_record)


def record_review_view(session: Session, principal: Principal, req: EgressRequest) -> None:
    """Reviewers read staged outputs before release: who looked at which files is audited."""
    _audit(session, principal.user_id, "egress.viewed", req, files={f.path: f.sha256 for f in req.files})


def open_for_review(
    session: Session, settings: Settings, principal: Principal, request_id: str, file_id: int
) -> tuple[EgressRequest, EgressFile, BinaryIO]:
    """The staged bytes for a reviewer's preview (DAC/admin only; verified like a download)."""
    if not principal.has("dac", "admin"):
        raise Forbidden("only reviewers can preview staged files", slug="missing-role")
    req = visible_request(session, request_id, principal)
    # Not for a reviewer conflicted on the request (its requester, the job's submitter, a
    # member of its project): reading the staged files is what review is, and a researcher
    # holding the DAC role read their own project's unreleased outputs in the panel.
    why = _reviewer_conflicts(session, req, principal)
    if why:
        raise _refuse(
            principal,
            req,
            Forbidden,
            "Preview refused",
            why,
            "conflicted-reviewer",
            "egress.preview_refused",
        )
    f = next((x for x in req.files if x.id == file_id), None)
    if f is None:
        raise _not_found(f"file {file_id} of request {request_id}")
    return req, f, open_file_for_review(session, settings, principal, req, f)


def open_file_for_review(
    session: Session, settings: Settings, principal: Principal, req: EgressRequest, f: EgressFile
) -> BinaryIO:
    """The staged bytes of one file of a request already loaded for this reviewer (verified);
    the caller has checked the reviewer is not conflicted on it (`open_for_review` does, the
    panel's page renders no previews for a conflicted reviewer)."""
    if not principal.has("dac", "admin"):
        raise Forbidden("only reviewers can preview staged files", slug="missing-role")
    try:
        fh = open_verified(settings.staging_dir, f.sha256)
    except StagingError as exc:
        raise _refuse(
            principal,
            req,
            Conflict,
            "Release integrity failure",
            f"{f.path}: {exc}",
            "staged-file-altered",
            "egress.preview_refused",
        ) from exc
    return fh


# ---------------------------------------------------------------------------- views


def shown_path(
    f: EgressFile, principal: Principal, names: outputnames.NameView | None, keys_dir: Path
) -> str:
    """A file's path as ``principal`` may see it: as the job's name screening ``names`` for
    this caller says (`outputnames.name_view`: everything for staff reviewing another
    project's job); with no view, staff see it and researchers do not (failing closed). A
    withheld name shows as the placeholder made from the file's keyed handle."""
    shown = names.shows(f.path) if names is not None else principal.has(*STAFF_ROLES)
    return f.path if shown else outputnames.placeholder_of(keys_dir, f.request.job_id, f.sha256)


def request_view(
    session: Session,
    req: EgressRequest,
    principal: Principal,
    names: outputnames.NameView | None = None,
    *,
    keys_dir: Path,
    facts: ViewerFacts | None = None,
    policies_dir: Path | None = None,
    open_ttl_days: float = 0.0,
) -> dict[str, Any]:
    """What a caller may see of a request. Votes stay blind until every required vote is in.

    ``notices`` are fixed words, for the DAC and the requester alike: a request that cannot
    reach its quorum, one checked under a policy changed since (given ``policies_dir``), an
    expired one. They are worked out for one request's view (``facts`` None), not a list's.

    Before that, anyone sees only how many votes are in; a reviewer also sees their own vote.
    Outcome counts are never shown while voting is open, so no reviewer can be swayed.
    File names withheld from a researcher (``names``, egress_review.outputnames) show as a
    placeholder, and their check results are left out (a reason may quote the name). Until
    the request is approved, a caller who is not staff sees each file's keyed handle in place
    of its SHA-256 (`tre.jobs.output_handles`); from approval on, the real hash.
    """
    votes = review_votes(req)
    # A withdrawn request's votes were never all in: blind for good (see `withdraw`).
    # So are an expired request's: it expired before a decision, whatever was cast.
    revealed = req.state not in (
        EgressState.checking,
        EgressState.awaiting_review,
        EgressState.withdrawn,
        EgressState.expired,
    )
    mine = next((r for r in votes if r.reviewer_id == principal.user_id), None)
    conflicted_reason = _reviewer_conflicts(session, req, principal, facts)
    resolution = next((r for r in req.reviews if r.stage == ReviewStage.resolution), None)
    # Released only as the signed log recorded it: a state set to approved in the database
    # must not give the requester exact sizes, real hashes or the blind votes (round 19).
    released = req.state == EgressState.approved and logged_decision.unlogged_decision(session, req) is None
    revealed = revealed and (released or req.state != EgressState.approved)
    reviewer_here = principal.has("dac") and _on_committee(session, req, principal.user_id, facts)
    notices, unmeetable, drift = _notices(session, req, facts, policies_dir)
    # Staff may see what the job wrote before it is reviewed; the requester may not.
    # ... and a member of the request's project is a researcher here, whatever other roles.
    staff = (
        principal.has(*STAFF_ROLES)
        and principal.user_id != req.requested_by
        and not _member(session, req.project_id, principal.user_id, facts)
    )
    hashes = outputnames.HashView(req.job_id, handle_key(keys_dir), keyed=not (staff or released))

    def review_dict(r: Review) -> dict[str, Any]:
        return {
            "reviewer": r.reviewer_id,
            "vote": r.vote,
            "comment": r.comment,
            "at": r.created_at.isoformat() if r.created_at else None,
        }

    return {
        "id": req.id,
        "job_id": req.job_id,
        "project_id": req.project_id,
        "requested_by": req.requested_by,
        "justification": req.justification,
        "state": req.state,
        "policy_name": req.policy_name,
        "policies": checking.policies_of(req.files),
        "required_reviews": req.required_reviews,
        "votes_in": len(votes),
        "votes_revealed": revealed,
        "votes": [review_dict(r) for r in votes] if revealed else [],
        "my_vote": review_dict(mine) if mine else None,
        "resolution": review_dict(resolution) if resolution else None,
        "can_vote": (
            reviewer_here
            and req.state == EgressState.awaiting_review
            and mine is None
            and conflicted_reason is None
        ),
        "can_resolve": (
            (
                principal.has("admin")
                or (
                    principal.has("dac") and _on_committee(session, req, principal.user_id, facts, every=True)
                )
            )
            and req.state == EgressState.conflicted
            and mine is None
            and conflicted_reason is None
        ),
        "can_download": released and _member(session, req.project_id, principal.user_id, facts),
        "created_at": req.created_at.isoformat() if req.created_at else None,
        "decided_at": req.decided_at.isoformat() if req.decided_at else None,
        "expires_at": _iso(expires_at(req, open_ttl_days)),
        "outcome": checking.worst_outcome([f.outcome for f in req.files]),
        # Staff by path; researchers by handle, an order that spells nothing of withheld names.
        "files": [
            _file_view(f, principal, names, staff, hashes, exact_size=staff or released)
            for f in _file_order(req.files, principal, names, hashes)
        ],
        "disclosure_available": req.disclosure_record is not None,
        "quorum_unmeetable": unmeetable,
        "policy_changed": drift,
        "notices": notices,
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _notices(
    session: Session, req: EgressRequest, facts: ViewerFacts | None, policies_dir: Path | None
) -> tuple[list[str], bool, bool]:
    """(fixed words, quorum unmeetable, policy changed) for one request's view."""
    notices: list[str] = []
    unmeetable = drift = False
    if facts is None and req.state in OPEN_STATES:
        unmeetable = bool(quorum_shortfall(session, req))
        if unmeetable:
            notices.append(QUORUM_UNMEETABLE)
        changed = policy_drift(session, req, policies_dir) if policies_dir is not None else None
        if changed is not None:
            drift = True
            notices.append(POLICY_UNAVAILABLE if changed == "unavailable" else POLICY_CHANGED)
    if req.state == EgressState.expired:
        notices.append(EXPIRED_REASON)
    return notices, unmeetable, drift


def _file_order(
    files: list[EgressFile],
    principal: Principal,
    names: outputnames.NameView | None,
    hashes: outputnames.HashView,
) -> list[EgressFile]:
    if all(_name_shown(f, principal, names) for f in files):
        return sorted(files, key=lambda x: x.path)
    return sorted(files, key=lambda x: (hashes.handle(x.sha256), x.id or 0))


def _name_shown(f: EgressFile, principal: Principal, names: outputnames.NameView | None) -> bool:
    return names.shows(f.path) if names is not None else principal.has(*STAFF_ROLES)


def _file_view(
    f: EgressFile,
    principal: Principal,
    names: outputnames.NameView | None,
    staff: bool,
    hashes: outputnames.HashView,
    *,
    exact_size: bool,
) -> dict[str, Any]:
    """One file as the caller may see it: a withheld name hides its checks too (a reason may
    quote it), reviewer-only evidence (what the job wrote) is only for staff, and the size is
    rounded (`tre.jobs.shown_size`) for the requester until the request is approved."""
    path = f.path if _name_shown(f, principal, names) else hashes.placeholder(f.sha256)
    checks = list(f.checks or [])
    shown = (checks if staff else checking.for_requester(checks)) if path == f.path else []
    return {
        "id": f.id,
        "path": path,
        "sha256": hashes.shown(f.sha256),
        "sha256_keyed": hashes.keyed,
        "size": shown_size(f.size, exact=exact_size),
        "size_rounded": not exact_size,
        "outcome": f.outcome,
        "name_withheld": path != f.path,
        "checks": shown,
    }


def summary_view(
    session: Session,
    req: EgressRequest,
    principal: Principal,
    *,
    keys_dir: Path,
    facts: ViewerFacts | None = None,
    open_ttl_days: float = 0.0,
) -> dict[str, Any]:
    full = request_view(session, req, principal, keys_dir=keys_dir, facts=facts, open_ttl_days=open_ttl_days)
    keep = (
        "id",
        "job_id",
        "project_id",
        "requested_by",
        "justification",
        "state",
        "policy_name",
        "required_reviews",
        "votes_in",
        "outcome",
        "created_at",
        "decided_at",
        "expires_at",
        "can_vote",
        "can_resolve",
    )
    return {k: full[k] for k in keep} | {"file_count": len(req.files)}
