"""Code archives in the platform: who may upload, which jobs may use them, who may read them.

An upload belongs to a project (`CodeUpload`): a job may only run code its own project
uploaded, so knowing another project's hash is not enough to run its code. Reading the code a
job ran is for the reviewers of its outputs (DAC), auditors and admins, and for the members of
the job's project; anyone else gets the same 404 as for a job they cannot see. Uploads and
reads are audited; the hash goes into the job's `job.submitted` entry.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tre.access import can_read_job_code, is_member
from tre.audit import record_event
from tre.auth.principal import Principal
from tre.code.archive import MIB, CodeLimits, CodeManifest, CodeTooLarge, inspect_file
from tre.code.store import CodeStore, StoredCode, check_sha256
from tre.errors import AdmissionDenied, NotFound, no_such
from tre.store.models import CodeArchive, CodeUpload, Job, Project


def project_limits(project: Project) -> CodeLimits:
    return CodeLimits.of_project(project.max_code_mb, project.max_code_files)


def upload_limits(session: Session, principal: Principal, project_id: str) -> CodeLimits:
    """The quota an upload to ``project_id`` is held to; 404 unless the caller is a member."""
    project = session.get(Project, project_id)
    if project is None or not is_member(session, project_id, principal.user_id):
        raise no_such("project", project_id)
    return project_limits(project)


def stored_bytes_of_project(session: Session, project_id: str) -> int:
    """Bytes of the shared code store the project's uploads account for (archive plus tree)."""
    total = session.scalar(
        select(func.coalesce(func.sum(CodeArchive.size + CodeArchive.unpacked_bytes), 0))
        .join(CodeUpload, CodeUpload.sha256 == CodeArchive.sha256)
        .where(CodeUpload.project_id == project_id)
    )
    return int(total or 0)


def check_store_quota(session: Session, max_mb: int, project_id: str, adding: int = 0) -> None:
    """Refuse when the project's uploads (plus ``adding`` bytes) exceed its share of the code
    store; with nothing added, when it is already full. Distinct archives, each within the
    per-upload quota, would otherwise fill the control plane's disk."""
    used = stored_bytes_of_project(session, project_id)
    if used + adding > max_mb * MIB or (adding == 0 and used >= max_mb * MIB):
        raise CodeTooLarge(
            f"project {project_id!r}'s code uploads would hold more than {max_mb} MiB of the code "
            f"store (they hold {used // MIB} MiB); ask an admin to raise TRE_CODE_MAX_STORE_MB_PER_PROJECT"
        )


def _add_once(session: Session, row: CodeArchive | CodeUpload) -> None:
    """Insert a row another request may insert at the same moment (same archive, same project)."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        pass  # the concurrent request stored the same facts


def record_upload(
    session: Session,
    principal: Principal,
    project_id: str,
    stored: StoredCode,
    store_quota_mb: int | None = None,
    store: CodeStore | None = None,
) -> bool:
    """Record the upload; returns whether *this project* had already uploaded the archive.

    That, not whether the store held the bytes, is what the uploader is told: the store is
    shared by every project, so "already stored" for an archive only another project sent
    would confirm that someone else holds exactly this code (content addressing must not
    answer questions across projects). Staff see both in the audit entry."""
    in_project = session.get(CodeUpload, (project_id, stored.sha256)) is not None
    known = session.get(CodeArchive, stored.sha256) is not None
    if store_quota_mb is not None and not in_project:
        try:
            check_store_quota(session, store_quota_mb, project_id, stored.size + stored.manifest.total_bytes)
        except CodeTooLarge:
            if not known and store is not None:  # nobody else sent it: keep nothing of it
                store.remove(stored.sha256)
            raise
    if not known:
        _add_once(
            session,
            CodeArchive(
                sha256=stored.sha256,
                size=stored.size,
                unpacked_bytes=stored.manifest.total_bytes,
                entry_count=stored.manifest.entry_count,
            ),
        )
    if not in_project:
        _add_once(
            session, CodeUpload(project_id=project_id, sha256=stored.sha256, uploaded_by=principal.user_id)
        )
    record_event(
        session,
        actor=principal.user_id,
        action="code.uploaded",
        project_id=project_id,
        details={
            "code_hash": stored.sha256,
            "size": stored.size,
            "entries": stored.manifest.entry_count,
            "unpacked_bytes": stored.manifest.total_bytes,
            "already_stored": stored.deduplicated,
            "already_in_project": in_project,
        },
    )
    return in_project


def check_job_code(session: Session, project: Project, code_hash: str | None) -> None:
    """Admission: the code must have been uploaded to this project and fit its current quota."""
    if code_hash is None:
        return
    check_sha256(code_hash)
    archive = session.get(CodeArchive, code_hash)
    if archive is None or session.get(CodeUpload, (project.id, code_hash)) is None:
        raise AdmissionDenied(
            f"code {code_hash} was not uploaded to project {project.id!r}; "
            "upload it first (tre submit --code)"
        )
    limits = project_limits(project)
    if archive.size > limits.max_bytes or archive.unpacked_bytes > limits.max_bytes:
        raise AdmissionDenied(
            f"code {code_hash} is over project {project.id!r} code quota of {limits.describe_bytes()}"
        )
    if archive.entry_count > limits.max_entries:
        raise AdmissionDenied(
            f"code {code_hash} has more entries than project {project.id!r} quota of {limits.max_entries}"
        )


def job_with_code(session: Session, principal: Principal, job_id: str) -> Job:
    """The job whose code the caller may read; 404 for jobs they may not see or that had no code."""
    job = session.get(Job, job_id)
    allowed = job is not None and can_read_job_code(
        session, principal, job.project_id, job.governing_dataset_ids
    )
    if job is None or not allowed:
        raise NotFound(f"no job {job_id!r}")
    if job.code_hash is None:
        raise NotFound(f"job {job_id} ran without a code archive")
    return job


def record_code_read(session: Session, principal: Principal, job: Job, what: str) -> None:
    record_event(
        session,
        actor=principal.user_id,
        action="job.code_read",
        project_id=job.project_id,
        job_id=job.id,
        details={"code_hash": job.code_hash, "read": what},
    )


def listing(store: CodeStore, job: Job) -> CodeManifest:
    """The entries of the archive the job ran, read from the stored archive itself."""
    assert job.code_hash is not None
    path = store.archive_path(job.code_hash)
    if not path.is_file():
        raise NotFound(f"the code archive of job {job.id} is no longer stored")
    # Already accepted once: list it under the largest quota an admin can set.
    return inspect_file(path, CodeLimits.ceiling())
