"""Container images: import (researchers and admins, streamed upload), list, approve and
revoke per project (admins: ingress review), push to the TRE's registry (admins), remove
(the importer their import, an admin the image)."""

from __future__ import annotations

import shutil

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tre.access import user_project_ids
from tre.api.deps import (
    DbSession,
    any_role,
    get_settings_dep,
    require_roles,
    works_before_writing,
    write_unit,
)
from tre.api.problems import Problem
from tre.api.schemas import IMAGE_REF_PATTERN
from tre.audit import record_event
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import Conflict, NotFound
from tre.images import catalog
from tre.images.catalog import ImageView
from tre.images.errors import ReservedImageName
from tre.images.push import push_image
from tre.images.reference import clean_name, names_platform_image
from tre.images.store import Detached, ImageStore, ImportResult

router = APIRouter(prefix="/api/v1/images", tags=["images"])
importers = require_roles("researcher", "admin")
admin_only = require_roles("admin")
readers = any_role()


class ImageOut(BaseModel):
    digest: str
    reference: str
    name: str
    size: int
    unpacked_size: int
    layers: int
    created: str
    imported_by: str
    imported_at: str
    source_format: str
    approved_for: list[str]
    imported: bool


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(max_length=600, pattern=IMAGE_REF_PATTERN)
    project_id: str = Field(max_length=64)
    external: bool = False


class RevokeImageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(max_length=600, pattern=IMAGE_REF_PATTERN)
    project_id: str = Field(max_length=64)


class ApprovalOut(BaseModel):
    project_id: str
    digest: str
    reference: str
    approved_by: str
    revoked: bool
    pushed_to: str | None = None


class PushIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(max_length=600, pattern=IMAGE_REF_PATTERN)


class PushOut(BaseModel):
    reference: str


def _out(view: ImageView) -> ImageOut:
    return ImageOut(**view.__dict__)


def _view(session: Session, settings: Settings, p: Principal, digest: str) -> ImageOut:
    """The image just imported, as the importer may see it: a researcher sees their own
    import (never who else sent the same bytes) and only their own projects' approvals."""
    see_all = p.has("admin", "auditor", "dac")
    for view in catalog.list_images(session, settings, p.user_id, see_all=see_all):
        if view.digest == digest:
            out = _out(view)
            if not see_all:
                mine = set(user_project_ids(session, p.user_id))
                out.approved_for = [x for x in out.approved_for if x in mine]
            return out
    raise NotFound(f"no image {digest}")


IMAGE_ARCHIVE_BODY = {"type": "string", "format": "binary", "minLength": 1}


@router.post(
    "",
    response_model=ImageOut,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The image archive itself: docker save or OCI archive (tar).",
            "content": {
                "application/x-tar": {"schema": IMAGE_ARCHIVE_BODY},
                "application/octet-stream": {"schema": IMAGE_ARCHIVE_BODY},
            },
        }
    },
)
@works_before_writing
async def import_image(
    request: Request,
    name: str | None = Query(None, max_length=128, description="Repository name (default: the archive's)."),
    p: Principal = Depends(importers),
    settings: Settings = Depends(get_settings_dep),
) -> ImageOut:
    """The body is the archive itself (docker save, OCI archive; the CLI tars an OCI layout
    folder), streamed to the control plane's scratch space and bounded in size."""
    store = ImageStore(settings)
    limit = store.limits.max_upload_bytes
    if name is not None and not p.has("admin") and names_platform_image(clean_name(name)):
        raise ReservedImageName(clean_name(name))  # before a byte is read
    if not p.has("admin"):  # a researcher whose imports already fill their share: before a byte
        await write_unit(request, catalog.check_quota, settings, p.user_id)
    work = store.scratch()
    try:
        upload = work / "upload.tar"
        received = 0
        with upload.open("wb") as fh:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise Problem(413, "Payload too large", f"the image is larger than {limit >> 20} MiB")
                fh.write(chunk)
        if received == 0:
            raise Problem(400, "Bad request", "send the image archive as the request body")
        result = await anyio.to_thread.run_sync(store.import_upload, upload, name, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not p.has("admin") and names_platform_image(result.name):  # the archive's own name
        if result.fresh:
            await anyio.to_thread.run_sync(store.remove, result.digest)
        raise ReservedImageName(result.name)
    try:
        return await write_unit(request, _record_import, settings, p, result)
    except Exception:  # not a cancellation: that may come after the commit
        # Not recorded (the database went away, a conflict): files nobody's row names are not
        # kept. An image that was in the store before this import stays.
        if result.fresh:
            await anyio.to_thread.run_sync(store.remove, result.digest)
        raise


def _record_import(session: Session, settings: Settings, p: Principal, result: ImportResult) -> ImageOut:
    quota = None if p.has("admin") else settings
    image = catalog.record_import(session, p.user_id, result, quota)
    # After record_import locked the image's row: a removal that took the files out of the
    # store while this upload was being verified has committed by now, so this sees it.
    if not ImageStore(settings).has(result.digest):
        raise Conflict(f"image {result.digest} was removed while it was being imported; import it again")
    session.flush()
    return _view(session, settings, p, image.digest)


class RemovalOut(BaseModel):
    digest: str
    name: str
    # True: the image left the store (and every import of it); False: only the caller's import.
    removed_from_store: bool
    freed_from_your_quota: int


@router.delete("/{digest}", response_model=RemovalOut)
@works_before_writing
async def remove_image(
    request: Request,
    digest: str = PathParam(pattern=r"^sha256:[0-9a-f]{64}$", description="The image's digest."),
    p: Principal = Depends(importers),
    settings: Settings = Depends(get_settings_dep),
) -> RemovalOut:
    """Remove your import of an image (researchers), or the image itself (admins; also a
    researcher's when nobody else imported it). Refused (409) while the image is approved for
    a project or a queued or running job uses it; see docs/images.md, "Removing an image"."""
    store = ImageStore(settings)
    detached: list[Detached] = []
    try:
        removal = await write_unit(request, _remove, store, p, digest, detached)
    except BaseException:
        for d in detached:  # the database kept the image: so does the store
            await anyio.to_thread.run_sync(store.restore, d)
        raise
    for d in detached:
        await anyio.to_thread.run_sync(store.discard, d)
    return RemovalOut(
        digest=removal.digest,
        name=removal.name,
        removed_from_store=removal.whole,
        freed_from_your_quota=removal.freed,
    )


def _remove(
    session: Session, store: ImageStore, p: Principal, digest: str, detached: list[Detached]
) -> catalog.Removal:
    removal = catalog.remove_image(session, p.user_id, digest, as_admin=p.has("admin"))
    if removal.whole:  # out of the store before the commit; put back if it does not commit
        detached.append(store.detach(digest))
    return removal


@router.get("", response_model=list[ImageOut])
def list_images(
    session: DbSession,
    usable_for: str | None = Query(None, max_length=64, description="Only images approved for this project."),
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> list[ImageOut]:
    see_all = p.has("admin", "auditor", "dac")
    return [_out(v) for v in catalog.list_images(session, settings, p.user_id, see_all, usable_for)]


@router.post("/approvals", response_model=ApprovalOut, status_code=201)
@works_before_writing
async def approve_image(
    session: DbSession,
    request: Request,
    body: ApprovalIn,
    p: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> ApprovalOut:
    """Approve an image for a project; with ``image_push_on_approve`` it is pushed first
    (outside any write lock: a push takes seconds to minutes, audited when it is done) and
    approved only if the push succeeded."""
    pushed = None
    if settings.image_push_on_approve:
        pushed = await _push(request, session, settings, p, body.reference)
    row = await write_unit(
        request, catalog.approve, settings, p.user_id, body.reference, body.project_id, body.external
    )
    return ApprovalOut(
        project_id=row.project_id,
        digest=row.digest,
        reference=row.reference,
        approved_by=row.approved_by,
        revoked=False,
        pushed_to=pushed,
    )


@router.post("/approvals/revoke", response_model=ApprovalOut)
def revoke_image(
    session: DbSession,
    body: RevokeImageIn,
    p: Principal = Depends(admin_only),
) -> ApprovalOut:
    row = catalog.revoke(session, p.user_id, body.reference, body.project_id)
    return ApprovalOut(
        project_id=row.project_id,
        digest=row.digest,
        reference=row.reference,
        approved_by=row.approved_by,
        revoked=True,
    )


@router.post("/push", response_model=PushOut)
@works_before_writing
async def push(
    session: DbSession,
    request: Request,
    body: PushIn,
    p: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> PushOut:
    return PushOut(reference=await _push(request, session, settings, p, body.reference))


async def _push(request: Request, session: Session, settings: Settings, p: Principal, ref: str) -> str:
    """Find the image in the request's read-only snapshot, push it with no write lock held
    (`works_before_writing`), and audit the push in its own short unit of work at once, so a
    later failure of the request cannot leave a push unaudited."""
    parsed, image = await run_in_threadpool(catalog.find_image, session, ref)
    if image is None:
        raise NotFound(f"no imported image {parsed.digest} to push")
    pushed = await run_in_threadpool(push_image, settings, image.name, image.digest)
    await write_unit(request, _record_push, p.user_id, image.digest, pushed)
    return pushed


def _record_push(session: Session, actor: str, digest: str, pushed: str) -> None:
    record_event(session, actor=actor, action="image.pushed", details={"digest": digest, "reference": pushed})
