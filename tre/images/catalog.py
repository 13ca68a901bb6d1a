"""Image records and ingress review in the database: who imported what, which project may
run which image (approvals by an admin, audited), and the admission gate that uses them.

An approval binds a project to one digest-pinned reference; admission admits a job only if
its image reference is exactly an approved one (the dataset policy's allowlist is checked
separately and stays a second gate). Approving an image that was never imported is allowed
only as an explicit ``external`` approval: it lives on the registry a cluster pulls from.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, bindparam, func, literal, select
from sqlalchemy.orm import Session

from tre.access import user_project_ids
from tre.audit import record_event
from tre.config import Settings
from tre.errors import AdmissionDenied, Conflict, NotFound
from tre.images.errors import ImageQuotaExceeded
from tre.images.layout import config_to_json
from tre.images.reference import Reference, canonical, parse_reference, printable
from tre.images.store import ImportResult
from tre.plural import agree, count
from tre.registry import get_project
from tre.store.base import utcnow
from tre.store.models import Image, ImageApproval, ImageImport, Job, JobState

MAX_USABLE_IN_MESSAGE = 10


def reference_of(settings: Settings, image: Image) -> str:
    return canonical(settings.image_registry, image.name, image.digest)


def stored_by(session: Session, user_id: str) -> tuple[int, int]:
    """Bytes (blobs plus unpacked root) and files of the shared store the user's imports
    account for."""
    row = session.execute(
        select(
            func.coalesce(func.sum(Image.size + Image.unpacked_size), 0),
            func.coalesce(func.sum(Image.files), 0),
        )
        .join(ImageImport, ImageImport.digest == Image.digest)
        .where(ImageImport.user_id == user_id)
    ).one()
    return int(row[0]), int(row[1])


def check_quota(
    session: Session, settings: Settings, user_id: str, adding: int = 0, adding_files: int = 0
) -> None:
    """Refuse when the user's imports (plus an image of ``adding`` bytes and ``adding_files``
    files) exceed their share of the store; with nothing added, when it is already full."""
    limit, max_files = settings.image_max_store_mb_per_user << 20, settings.image_max_store_files_per_user
    used, files = stored_by(session, user_id)
    full = adding == adding_files == 0
    if used + adding > limit or (full and used >= limit):
        raise ImageQuotaExceeded(
            f"your imported images would hold more than {settings.image_max_store_mb_per_user} MiB "
            f"of the image store (they hold {used >> 20} MiB); ask an admin to remove old ones"
        )
    if files + adding_files > max_files or (full and files >= max_files):
        raise ImageQuotaExceeded(
            f"your imported images would hold more than {max_files} files in the image store "
            f"(they hold {files}); ask an admin to remove old ones"
        )


def _locked_image(session: Session, digest: str) -> Image | None:
    """The image's row, locked until the unit of work ends (``FOR UPDATE`` on PostgreSQL)."""
    return session.scalars(select(Image).where(Image.digest == digest).with_for_update()).one_or_none()


def record_import(
    session: Session, actor: str, result: ImportResult, settings: Settings | None = None
) -> Image:
    """The database half of an import (the files are already in the store). With
    ``settings``, the importer's quota is checked first; a refused image that nobody else
    imported is removed from the store again."""
    # Locked (PostgreSQL; SQLite's writer lock serialises all writers) so that a removal of the
    # same image (`remove_image`) commits entirely before or after this import is recorded.
    image = session.scalars(
        select(Image).where(Image.digest == result.digest).with_for_update()
    ).one_or_none()
    mine = session.get(ImageImport, (result.digest, actor))
    if settings is not None and mine is None:
        try:
            check_quota(session, settings, actor, result.size + result.unpacked_size, result.files)
        except ImageQuotaExceeded:
            if image is None:
                from tre.images.store import ImageStore

                ImageStore(settings).remove(result.digest)
            raise
    if image is None:
        image = Image(
            digest=result.digest,
            name=result.name,
            size=result.size,
            unpacked_size=result.unpacked_size,
            layers=result.layers,
            files=result.files,
            created=result.created,
            config=config_to_json(result.config),
            source_format=result.source_format,
            imported_by=actor,
        )
        session.add(image)
        session.flush()
    if mine is None:
        session.add(ImageImport(digest=result.digest, user_id=actor, name=result.name))
        session.flush()
    record_event(
        session,
        actor=actor,
        action="image.imported",
        details={
            "digest": result.digest,
            "name": image.name,
            "size": result.size,
            "layers": result.layers,
            "format": result.source_format,
            "setuid_bits_dropped": result.setuid_dropped,
            "already_imported_by_another": image.imported_by != actor and mine is None,
        },
    )
    return image


@dataclass(frozen=True)
class Removal:
    """What `remove_image` did: the image left the store (``whole``), or only the caller's
    import of it went (someone else imported it too); ``freed`` is what the caller's quota
    counted for it (bytes)."""

    digest: str
    name: str
    whole: bool
    freed: int


def remove_image(session: Session, actor: str, digest: str, as_admin: bool) -> Removal:
    """Remove an image, or the caller's import of it (the database half; the caller then takes
    the files out of the store when ``whole``, in the same unit of work).

    A researcher removes their own import: their quota is freed at once. When nobody else
    imported the image, the image itself goes, and so does it when an admin removes it (with
    every researcher's import of it). Removing the image is refused while a project may run
    it (an admin revokes the approvals first: removal never withdraws a decision of ingress
    review on its own) or a queued or running job uses it. Audited as ``image.removed``."""
    image = session.scalars(select(Image).where(Image.digest == digest).with_for_update()).one_or_none()
    mine = session.get(ImageImport, (digest, actor))
    if image is None or (mine is None and not as_admin):
        raise NotFound(
            f"no image {digest} imported by you" if not as_admin else f"no imported image {digest}"
        )
    imports = list(session.scalars(select(ImageImport).where(ImageImport.digest == digest)))
    whole = as_admin or all(i.user_id == actor for i in imports)
    if whole:
        _refuse_while_in_use(session, digest, as_admin)
        for row in imports:
            session.delete(row)
        session.flush()  # the imports first: the database would cascade them with the image
        session.delete(image)
    else:
        assert mine is not None
        session.delete(mine)
    session.flush()
    freed = image.size + image.unpacked_size if mine is not None else 0
    record_event(
        session,
        actor=actor,
        action="image.removed",
        details={
            "digest": digest,
            "name": image.name,
            "whole_image": whole,
            "imports_removed": len(imports) if whole else 1,
            "bytes": image.size + image.unpacked_size,
        },
    )
    return Removal(digest=digest, name=image.name, whole=whole, freed=freed)


def _refuse_while_in_use(session: Session, digest: str, as_admin: bool) -> None:
    """A researcher learns how many approvals and jobs hold the image, an admin which."""
    projects = sorted(
        session.scalars(
            select(ImageApproval.project_id).where(
                ImageApproval.digest == digest, ImageApproval.revoked_at.is_(None)
            )
        )
    )
    if projects:
        n = len(projects)
        which = (
            f"{agree(n, 'project', 'projects')} {', '.join(projects)}" if as_admin else count(n, "project")
        )
        raise Conflict(
            f"image {digest} is approved for {which}; an admin revokes the approvals first "
            "(tre image revoke REF --project P)"
        )
    jobs = sorted(
        session.scalars(
            select(Job.id).where(
                Job.state.in_([JobState.queued.value, JobState.running.value]), Job.image.like(f"%@{digest}")
            )
        )
    )
    if jobs:
        n = len(jobs)
        which = f"{agree(n, 'job', 'jobs')} {', '.join(jobs[:10])}" if as_admin else count(n, "job")
        raise Conflict(f"image {digest} is used by queued or running {which}; remove it when they have ended")


def find_image(session: Session, ref: str) -> tuple[Reference, Image | None]:
    parsed = parse_reference(ref)
    return parsed, session.get(Image, parsed.digest)


def approve(
    session: Session, settings: Settings, actor: str, ref: str, project_id: str, external: bool = False
) -> ImageApproval:
    parsed, image = find_image(session, ref)
    get_project(session, project_id)
    if image is not None:
        reference = reference_of(settings, image)
    elif external and parsed.repository:
        reference = str(parsed)
    elif external:
        raise NotFound("an external approval needs the full reference (registry/name@sha256:...)")
    else:
        raise NotFound(f"no imported image {parsed.digest}; import it first, or approve it as external")
    row = session.scalars(
        select(ImageApproval).where(
            ImageApproval.project_id == project_id, ImageApproval.digest == parsed.digest
        )
    ).one_or_none()
    if row is None:
        row = ImageApproval(
            project_id=project_id, digest=parsed.digest, reference=reference, approved_by=actor
        )
        session.add(row)
    else:
        row.reference, row.approved_by, row.approved_at = reference, actor, utcnow()
        row.revoked_at = row.revoked_by = None
    session.flush()
    record_event(
        session,
        actor=actor,
        action="image.approved",
        project_id=project_id,
        details={"digest": parsed.digest, "reference": reference, "external": image is None},
    )
    return row


def revoke(session: Session, actor: str, ref: str, project_id: str) -> ImageApproval:
    parsed = parse_reference(ref)
    row = session.scalars(
        select(ImageApproval).where(
            ImageApproval.project_id == project_id,
            ImageApproval.digest == parsed.digest,
            ImageApproval.revoked_at.is_(None),
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"image {parsed.digest} is not approved for project {project_id!r}")
    row.revoked_at, row.revoked_by = utcnow(), actor
    record_event(
        session,
        actor=actor,
        action="image.revoked",
        project_id=project_id,
        details={"digest": parsed.digest, "reference": row.reference},
    )
    return row


def active_approvals(session: Session, project_ids: list[str] | None = None) -> list[ImageApproval]:
    query = (
        select(ImageApproval).where(ImageApproval.revoked_at.is_(None)).order_by(ImageApproval.approved_at)
    )
    if project_ids is not None:
        query = query.where(ImageApproval.project_id.in_(project_ids))
    return list(session.scalars(query))


def usable_references(session: Session, project_id: str) -> list[str]:
    """The references approved (and not revoked) for the project, sorted. A column query,
    not `active_approvals`' rows: admission asks this on every submission."""
    rows = session.execute(_USABLE_REFERENCES, {"project_id": project_id})
    return sorted(r for (r,) in rows)


_USABLE_REFERENCES = (
    select(ImageApproval.reference)
    .where(ImageApproval.project_id == bindparam("project_id"), ImageApproval.revoked_at.is_(None))
    .distinct()
)
_IS_APPROVED = (
    select(literal(1))
    .where(
        ImageApproval.project_id == bindparam("project_id"),
        ImageApproval.reference == bindparam("reference"),
        ImageApproval.revoked_at.is_(None),
    )
    .limit(1)
)


@dataclass(frozen=True)
class ImageView:
    """One row of `tre image list`: an image and the projects that may run it."""

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
    imported: bool = True


def list_images(
    session: Session, settings: Settings, user_id: str, see_all: bool, usable_for: str | None = None
) -> list[ImageView]:
    """Staff see every image; a researcher sees images approved for their projects and the
    ones they imported themselves. ``usable_for`` narrows to one project's approved images.

    A researcher sees their own import (their name for it, their time, themselves as the
    importer) for an image they imported, never who else sent the same bytes."""
    mine = None if see_all else set(user_project_ids(session, user_id))
    own = (
        {}
        if see_all
        else {r.digest: r for r in session.scalars(select(ImageImport).where(ImageImport.user_id == user_id))}
    )
    approvals = active_approvals(session, None if mine is None else sorted(mine))
    approved: dict[str, list[str]] = {}
    external: dict[str, str] = {}
    for a in approvals:
        approved.setdefault(a.digest, []).append(a.project_id)
        external[a.digest] = a.reference
    views = []
    for image in session.scalars(select(Image).order_by(Image.imported_at)):
        projects = sorted(approved.get(image.digest, []))
        own_import = own.get(image.digest)
        if mine is not None and not projects and own_import is None:
            continue
        imported_by, imported_at = image.imported_by, image.imported_at
        if own_import is not None:
            imported_by, imported_at = user_id, own_import.imported_at
        views.append(
            ImageView(
                digest=image.digest,
                reference=reference_of(settings, image),
                name=image.name,
                size=image.size,
                unpacked_size=image.unpacked_size,
                layers=image.layers,
                created=image.created,
                imported_by=imported_by,
                imported_at=imported_at.isoformat(),
                source_format=image.source_format,
                approved_for=projects,
            )
        )
    known = {v.digest for v in views} | set(session.scalars(select(Image.digest)))
    for digest, projects in approved.items():
        if digest not in known:
            views.append(
                ImageView(
                    digest=digest,
                    reference=external[digest],
                    name=external[digest].rpartition("@")[0],
                    size=0,
                    unpacked_size=0,
                    layers=0,
                    created="",
                    imported_by="",
                    imported_at="",
                    source_format="external",
                    approved_for=sorted(projects),
                    imported=False,
                )
            )
    if usable_for is not None:
        views = [v for v in views if usable_for in v.approved_for]
    return views


def require_approved(session: Session, project_id: str, image: str) -> None:
    """Admission's image gate: the exact reference must be approved for the project.

    One indexed look-up on every submission; the list of usable references is read only to
    explain a refusal."""
    params = {"project_id": project_id, "reference": image}
    if session.connection().execute(_IS_APPROVED, params).first() is not None:
        return
    usable = usable_references(session, project_id)
    if not usable:
        hint = "no image is approved for it yet (an admin runs `tre image approve REF --project P`)"
    else:
        shown = ", ".join(usable[:MAX_USABLE_IN_MESSAGE])
        more = (
            f" and {len(usable) - MAX_USABLE_IN_MESSAGE} more" if len(usable) > MAX_USABLE_IN_MESSAGE else ""
        )
        hint = f"usable images: {shown}{more}"
    raise AdmissionDenied(
        f"image {printable(image, 200)!r} is not approved for project {project_id!r}; {hint}"
    )


def recover_image_store(settings: Settings, engine: Engine) -> list[str]:
    """Settle the image removals a crash left undecided (`ImageStore.recover_removals`),
    against this database: at the API's start and by `tre admin image-store-recover`."""
    from tre.images.store import ImageStore
    from tre.store.db import session_scope

    if not (settings.images_dir / "tmp").is_dir():
        return []  # no image was ever imported here

    def in_database(digest: str) -> bool:
        with session_scope(engine, read_only=True) as s:
            return s.get(Image, digest) is not None

    return ImageStore(settings).recover_removals(in_database)
