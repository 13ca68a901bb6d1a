"""Code archives: upload one for a project, then list or download the one a job ran.

Submitting a job with code is two requests (docs/code.md): ``POST /api/v1/code?project_id=P``
with the tar.gz as the raw body (``Content-Type: application/gzip``) answers its SHA-256, and
``POST /api/v1/jobs`` names it as ``code_hash``. The upload is streamed to disk, hashed and
bounded by the project's quota as it arrives, and checked entry by entry before it is stored;
the caller is authenticated and must be a project member before a byte of it is read.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from tre.api.deps import (
    DbSession,
    any_role,
    get_settings_dep,
    require_roles,
    works_before_writing,
    write_unit,
)
from tre.api.problems import Problem
from tre.api.schemas import CodeEntryOut, CodeListingOut, CodeOut
from tre.auth.principal import Principal
from tre.code import service
from tre.code.archive import CodeTooLarge
from tre.code.store import CodeStore, StoredCode
from tre.config import Settings
from tre.errors import NotFound

router = APIRouter(tags=["code"])
uploaders = require_roles("researcher", "admin")
readers = any_role()
UPLOAD_PATH = "/api/v1/code"
# The request-size ceiling for uploads (the project's quota is enforced while streaming);
# QuotaIn caps max_code_mb at the same 1 GiB.
MAX_CODE_UPLOAD_BYTES = 1 << 30
GZIP_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")


@router.post(
    UPLOAD_PATH,
    response_model=CodeOut,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
@works_before_writing
async def upload_code(
    session: DbSession,
    request: Request,
    project_id: str = Query(min_length=1, max_length=63),
    p: Principal = Depends(uploaders),
    settings: Settings = Depends(get_settings_dep),
) -> CodeOut:
    """Store a tar.gz of the caller's code for ``project_id``; answers its SHA-256."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in GZIP_TYPES:
        raise Problem(
            415, "Unsupported media type", "send the code as a tar.gz body with Content-Type application/gzip"
        )
    limits = await run_in_threadpool(service.upload_limits, session, p, project_id)
    # A project whose uploads already fill its share of the store: refused before a byte.
    await run_in_threadpool(
        service.check_store_quota, session, settings.code_max_store_mb_per_project, project_id
    )
    # Ends the snapshot: not held open (WAL checkpoints, vacuum) while the body streams.
    await run_in_threadpool(session.commit)
    declared = request.headers.get("content-length", "")
    # Refused before a byte is read; ASCII digits only (str.isdigit takes '²', which int refuses).
    if declared.isascii() and declared.isdigit() and int(declared) > limits.max_bytes:
        raise CodeTooLarge(f"the code archive is larger than {limits.describe_bytes()}, the project's quota")
    store = CodeStore(settings)
    with store.receive(limits) as incoming:
        async for chunk in request.stream():
            incoming.write(chunk)
        stored: StoredCode = await run_in_threadpool(incoming.accept)
    try:
        in_project = await write_unit(
            request,
            service.record_upload,
            p,
            project_id,
            stored,
            settings.code_max_store_mb_per_project,
            store,
        )
    except Exception:  # not a cancellation: that may come after the commit
        # Not recorded (the database went away, the quota refused it): an archive this upload
        # put in the store is not kept without its row; one that was there before stays.
        if not stored.deduplicated:
            await run_in_threadpool(store.remove, stored.sha256)
        raise
    return CodeOut(
        sha256=stored.sha256,
        size=stored.size,
        entries=stored.manifest.entry_count,
        unpacked_bytes=stored.manifest.total_bytes,
        already_stored=in_project,
    )


@router.get("/api/v1/jobs/{job_id}/code", response_class=FileResponse)
def download_code(
    session: DbSession,
    job_id: str,
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> FileResponse:
    """The exact archive the job ran (its SHA-256 in ``X-Code-SHA256``); audited."""
    job = service.job_with_code(session, p, job_id)
    assert job.code_hash is not None
    path = CodeStore(settings).archive_path(job.code_hash)
    if not path.is_file():
        raise NotFound(f"the code archive of job {job_id} is no longer stored")
    service.record_code_read(session, p, job, "archive")
    return FileResponse(
        path,
        media_type="application/gzip",
        filename=f"code-{job.id}-{job.code_hash[:12]}.tar.gz",
        headers={"X-Code-SHA256": job.code_hash},
    )


@router.get("/api/v1/jobs/{job_id}/code/files", response_model=CodeListingOut)
def list_code(
    session: DbSession,
    job_id: str,
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> CodeListingOut:
    """The entries of the archive the job ran (path, kind, size, link target); audited."""
    job = service.job_with_code(session, p, job_id)
    assert job.code_hash is not None
    manifest = service.listing(CodeStore(settings), job)
    service.record_code_read(session, p, job, "listing")
    return CodeListingOut(
        job_id=job.id,
        code_hash=job.code_hash,
        entries=[
            CodeEntryOut(path=e.path, kind=e.kind, size=e.size, target=e.target) for e in manifest.entries
        ],
    )
