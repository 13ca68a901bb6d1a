"""The content-addressed image store on the control plane (``$TRE_HOME/image-store``).

    oci/<hex>/        an OCI layout holding one image (tag ``image``), <hex> = manifest digest
    bundles/<hex>/    its unpacked bundle; ``rootfs/`` is what the local sandbox runs
    tmp/              uploads and conversions in progress (removed when they end)
    locks/<hex>       one lock file per digest: an import's placing and a removal's detaching
                      of that image never interleave

Each image's layout holds its own copy of every blob it names (nothing is linked or shared
between ``oci/<hex>`` folders, even for layers two images have in common), so removing an
image frees exactly its folders and never touches another image's (`detach`).

An import is all or nothing: the upload is checked (`archive`), converted by skopeo into a
scratch layout, verified (`layout`), moved into ``oci/`` and unpacked (`unpack`); any
refusal removes what was made. The worker asks `rootfs(digest)` and `config(digest)`.

The store and its folders are 0700: an image a researcher imported is theirs and their
projects' to run, not for other accounts on the host (the sandbox reaches a root file
system through its private staging mounts, not through these permissions). What a crashed
import or unpack left behind (``tmp/*``, ``bundles/.*.partial``) is removed by the next
import once it is older than any import can take (`STALE_SCRATCH_S`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tre.config import Settings
from tre.executors.base import ImageConfig
from tre.images.archive import gunzip_if_needed, inspect_archive, tar_layout_dir
from tre.images.errors import ImageRejected
from tre.images.layout import image_config_of, manifest_descriptor, verify_layout
from tre.images.limits import ImageLimits
from tre.images.reference import check_digest, clean_name
from tre.images.tools import skopeo_to_layout
from tre.images.unpack import drop_unpack_lock, removable_lock, tree_size, unpack_once
from tre.stale import remove_stale

# Longer than any import runs (each tool is bounded to 30 min, an import runs three at most).
STALE_SCRATCH_S = 6 * 3600
PRIVATE_DIRS = ("oci", "bundles", "tmp", "locks")
# A removal's folder under tmp/ (`ImageStore.detach`) and the file in it naming the image.
REMOVED_PREFIX = "removed-"
CLAIM = "digest"


@dataclass(frozen=True)
class ImportResult:
    digest: str
    name: str
    size: int
    unpacked_size: int
    layers: int
    created: str
    config: ImageConfig
    source_format: str
    setuid_dropped: int
    files: int = 0  # layer entries (each an inode once unpacked), whiteouts included
    fresh: bool = False  # this import put the image in the store (it was not there before)


class ImageStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.images_dir
        self.limits = ImageLimits.from_settings(settings)

    # -- paths ------------------------------------------------------------------------------
    def layout(self, digest: str) -> Path:
        return self.root / "oci" / check_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return (self.layout(digest) / "index.json").is_file()

    def ensure_dirs(self) -> None:
        """The store's folders, private to the service user (0700)."""
        for d in (self.root, *(self.root / sub for sub in PRIVATE_DIRS)):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)

    def scratch(self) -> Path:
        """A new scratch folder for one import; leftovers of crashed ones are swept first."""
        self.ensure_dirs()
        self.sweep_stale()
        return Path(tempfile.mkdtemp(dir=self.root / "tmp"))

    def sweep_stale(self, now: float | None = None) -> list[Path]:
        """Remove scratch folders and partial unpacks older than `STALE_SCRATCH_S`. Never a
        detached image (``tmp/removed-*``): whether its bytes go or come back depends on the
        database (`recover_removals`)."""
        candidates = [
            *(p for p in (self.root / "tmp").glob("*") if not p.name.startswith(REMOVED_PREFIX)),
            *(self.root / "bundles").glob(".*.partial"),
        ]
        return remove_stale(candidates, STALE_SCRATCH_S, now)

    # -- what the worker asks -----------------------------------------------------------------
    def rootfs(self, digest: str, verified: bool = False) -> Path:
        """The unpacked, sanitised root filesystem (unpacked now if it was removed).

        An unpack of a stored image verifies its layout again first (`verify_layout`: every
        layer's entries, the config, the platform), with today's rules: the bundle is a cache
        made again after a removal or on a new host, and an image stored before a rule existed
        (the depth bound of redteam round 14, the Env names) went to umoci unchecked, failing
        (RecursionError, a half-made bundle) or running where a new import is refused.
        ``verified``: the import that has just verified this layout."""
        if not self.has(digest):
            raise ImageRejected(f"image {digest} is not in the image store")
        self.ensure_dirs()
        layout = self.layout(digest)
        return unpack_once(
            layout,
            self.root / "bundles",
            digest.removeprefix("sha256:"),
            self.limits.max_unpacked_bytes,
            check=None if verified else lambda: self._verify_stored(layout, digest),
        )

    def _verify_stored(self, layout: Path, digest: str) -> None:
        if verify_layout(layout, self.limits).digest != digest:
            raise ImageRejected(f"image {digest}'s stored layout names another manifest")

    def config(self, digest: str) -> ImageConfig:
        layout = self.layout(digest)
        manifest = json.loads(_blob(layout, manifest_descriptor(layout)["digest"]).read_bytes())
        return image_config_of(json.loads(_blob(layout, manifest["config"]["digest"]).read_bytes()))

    # -- import ---------------------------------------------------------------------------------
    def import_path(self, source: Path, name: str | None = None) -> ImportResult:
        """Import a docker save archive, an OCI archive or an OCI layout folder (copied first)."""
        work = self.scratch()
        try:
            upload = work / "upload.tar"
            if source.is_dir():
                tar_layout_dir(source, upload)
            else:
                shutil.copyfile(source, upload)
            return self.import_upload(upload, name, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def import_upload(self, upload: Path, name: str | None, work: Path) -> ImportResult:
        """Import a file already in ``work`` (a scratch folder this call may fill)."""
        upload = gunzip_if_needed(upload, self.limits)
        info = inspect_archive(upload, self.limits)
        layout = work / "layout"
        skopeo_to_layout(f"{info.format}:{upload}", layout)
        verified = verify_layout(layout, self.limits)
        final = self.layout(verified.digest)
        with self.digest_lock(verified.digest):
            fresh = not self.has(verified.digest)
            if fresh:
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(layout, final)
                except OSError:
                    if not self.has(verified.digest):  # not a concurrent import of the same image
                        raise
                    fresh = False
            try:
                rootfs = self.rootfs(verified.digest, verified=fresh)
            except Exception:
                if fresh:
                    self.remove(verified.digest)
                raise
        return ImportResult(
            digest=verified.digest,
            name=clean_name(name or info.name_hint),
            size=verified.size,
            unpacked_size=tree_size(rootfs),
            layers=verified.layers,
            created=verified.created,
            config=verified.image_config,
            source_format=info.format,
            setuid_dropped=verified.scan.setuid,
            files=verified.scan.files,
            fresh=fresh,
        )

    def remove(self, digest: str) -> None:
        hex_digest = check_digest(digest).removeprefix("sha256:")
        shutil.rmtree(self.root / "oci" / hex_digest, ignore_errors=True)
        shutil.rmtree(self.root / "bundles" / hex_digest, ignore_errors=True)

    # -- removal (tre image rm) -------------------------------------------------------------------
    @contextlib.contextmanager
    def digest_lock(self, digest: str) -> Iterator[None]:
        """Exclusive, per digest, across processes and API replicas sharing the store (a lock
        file its holder may remove: `removable_lock`)."""
        self.ensure_dirs()
        with removable_lock(self.root / "locks" / check_digest(digest).removeprefix("sha256:")):
            yield

    def drop_lock_file(self, digest: str) -> None:
        """Remove the digest's lock file; only while holding `digest_lock` and with the image
        out of the store (before, one file per digest ever imported stayed for ever)."""
        hex_digest = check_digest(digest).removeprefix("sha256:")
        with contextlib.suppress(FileNotFoundError):
            (self.root / "locks" / hex_digest).unlink()
        drop_unpack_lock(self.root / "bundles", hex_digest)

    def detach(self, digest: str) -> Detached:
        """Take the image out of the store at once (two renames into a scratch folder), so
        that `has` is false from here on, while its bytes can still be put back (`restore`)
        if the database's removal does not commit; `discard` then frees them. Under the
        digest's lock: an import of the same image either placed its copy before (and finds
        it gone when it records, so it is refused and can be sent again) or places a fresh
        one after."""
        hex_digest = check_digest(digest).removeprefix("sha256:")
        with self.digest_lock(digest):
            trash = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix=REMOVED_PREFIX))
            # The claim: which image this is, locked for as long as this removal is undecided
            # (a process that dies releases it, so `recover_removals` knows it is unfinished).
            claim = os.open(trash / CLAIM, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(claim, fcntl.LOCK_EX)
            detached = Detached(digest, trash, claim=claim)
            try:
                os.write(claim, digest.encode())
                os.fsync(claim)
                for sub in ("oci", "bundles"):
                    source = self.root / sub / hex_digest
                    if source.exists():
                        os.replace(source, trash / sub)
                        detached.moved.append((source, trash / sub))
            except BaseException:
                self._put_back(detached)
                detached.release()
                raise
        return detached

    def _put_back(self, detached: Detached) -> None:
        for source, moved in detached.moved:
            if not source.exists():
                os.replace(moved, source)

    def restore(self, detached: Detached) -> None:
        """Put a detached image back (its removal was not committed), unless an import has
        placed the same image again meanwhile."""
        try:
            with self.digest_lock(detached.digest):
                self._put_back(detached)
            shutil.rmtree(detached.trash, ignore_errors=True)
        finally:
            detached.release()

    def discard(self, detached: Detached) -> int:
        """Free a detached image's bytes (its removal was committed); returns how many. Its
        lock files go too, unless an import has placed the same image again meanwhile."""
        try:
            freed = sum(tree_size(moved) for _source, moved in detached.moved)
            shutil.rmtree(detached.trash, ignore_errors=True)
            with self.digest_lock(detached.digest):
                if not self.has(detached.digest):
                    self.drop_lock_file(detached.digest)
            return freed
        finally:
            detached.release()

    def recover_removals(self, in_database: Callable[[str], bool]) -> list[str]:
        """Finish the removals a crash interrupted; the digests it settled.

        A removal moves the image's folders aside (`detach`), deletes its row, commits, then
        frees the folders (`discard`). A process killed in between left them in
        ``tmp/removed-*``: before, the row stayed with no image behind it (killed before the
        commit; the next import's sweep then deleted the bytes of an image still listed) or
        the bytes stayed until that sweep (killed after it). Now, at the API's start (and by
        `tre admin image-store-recover`), each one whose claim no live removal holds is put
        back when ``in_database(digest)`` (the row is still there: the removal never
        committed) and freed when not; lock files of digests neither stored nor listed go.
        """
        self.ensure_dirs()
        settled = []
        for trash in sorted((self.root / "tmp").glob(REMOVED_PREFIX + "*")):
            try:
                claim = os.open(trash / CLAIM, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:  # killed before it claimed anything: nothing was moved
                shutil.rmtree(trash, ignore_errors=True)
                continue
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a removal still deciding (this or another process)
                digest = os.read(claim, 200).decode(errors="replace")
                try:
                    check_digest(digest)
                except ImageRejected:
                    shutil.rmtree(trash, ignore_errors=True)
                    continue
                hex_digest = digest.removeprefix("sha256:")
                keep = in_database(digest)
                with self.digest_lock(digest):
                    if keep:
                        for sub in ("oci", "bundles"):
                            moved, source = trash / sub, self.root / sub / hex_digest
                            if moved.exists() and not source.exists():
                                os.replace(moved, source)
                    shutil.rmtree(trash, ignore_errors=True)
                settled.append(digest)
            finally:
                os.close(claim)
        for lock in (self.root / "locks").iterdir():
            digest = f"sha256:{lock.name}"
            try:
                check_digest(digest)
            except ImageRejected:
                continue
            with self.digest_lock(digest):
                if not self.has(digest) and not in_database(digest):
                    self.drop_lock_file(digest)
        return settled


@dataclass
class Detached:
    """An image taken out of the store by `ImageStore.detach`: its folders, moved aside, and
    the locked claim that says the removal is still being decided."""

    digest: str
    trash: Path
    moved: list[tuple[Path, Path]] = field(default_factory=list)
    claim: int | None = None

    def release(self) -> None:
        if self.claim is not None:
            os.close(self.claim)
            self.claim = None


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / check_digest(digest).removeprefix("sha256:")
