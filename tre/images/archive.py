"""The uploaded file, before any tool reads it: what kind of image archive it is, and
whether its own members are safe to hand to skopeo.

skopeo extracts an OCI archive to a temporary folder, so a member named ``../x`` or a link
out of the archive would be its problem to get right; we refuse those here first. Every
``blobs/sha256/<hex>`` member is hashed against its name on the way: a blob that does not
match its digest is refused before any tool trusts it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tre.errors import STORAGE_FULL_DETAIL, StorageFull, is_storage_full
from tre.images.errors import ImageRejected
from tre.images.layout import check_layer_count, check_layer_descriptors, digest_problem
from tre.images.limits import ImageLimits, StreamBudget
from tre.images.reference import printable
from tre.tarbounds import CappedReader, StrictTarInfo, TarBoundExceeded, stream_cap

MAX_INDEX_BYTES = 4 << 20
CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveInfo:
    format: str  # "docker-archive" or "oci-archive"
    name_hint: str  # what the archive calls the image (RepoTags / ref annotation), unscreened


def gunzip_if_needed(path: Path, limits: ImageLimits) -> Path:
    """`docker save | gzip` is common; give the tools a plain tar (bounded in size)."""
    with path.open("rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return path
    plain = path.with_name(path.name + ".tar")
    written = 0
    try:
        with gzip.open(path, "rb") as src, plain.open("wb") as dst:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > limits.max_upload_bytes:
                    raise ImageRejected(
                        f"the archive unpacks to more than {limits.max_upload_bytes >> 20} MiB"
                    )
                dst.write(chunk)
    except (OSError, EOFError) as exc:
        plain.unlink(missing_ok=True)
        if is_storage_full(exc):  # our disk filled while writing, not a damaged stream
            raise StorageFull(STORAGE_FULL_DETAIL) from None
        raise ImageRejected(f"not an image archive: the gzip stream is damaged ({exc})") from None
    except ImageRejected:
        plain.unlink(missing_ok=True)
        raise
    path.unlink()
    return plain


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("/") or ".." in name.split("/"):
        raise ImageRejected(f"the archive member {printable(member.name)!r} points outside the archive")
    return name.rstrip("/")


def inspect_archive(path: Path, limits: ImageLimits) -> ArchiveInfo:
    """Check every member of the outer tar and say which format it is."""
    docs: dict[str, Any] = {}
    sizes: dict[str, int] = {}  # member -> bytes
    names: set[str] = set()
    hashes: dict[str, str] = {}  # member -> sha256 of its (uncompressed) content
    links: dict[str, str] = {}
    dirs: set[str] = set()
    try:
        with tarfile.open(path, mode="r:", tarinfo=StrictTarInfo) as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_files:
                    raise ImageRejected(f"the archive has more than {limits.max_files} members")
                name = _member_name(member)
                if name in names and not _same_twice(name, member, links, dirs):
                    # tarfile's lookups take the last of two, Go's archive readers (skopeo)
                    # the first: the member we check would not be the one skopeo reads.
                    raise ImageRejected(f"the archive member {printable(name)!r} appears twice")
                names.add(name)
                if member.isdir():
                    dirs.add(name)
                    continue
                if member.issym():
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
                    if member.linkname.startswith("/") or target.startswith(".."):
                        raise ImageRejected(
                            f"the archive member {printable(name)!r} links outside the archive"
                        )
                    links[name] = target
                    continue
                if not member.isfile():
                    raise ImageRejected(f"the archive member {printable(name)!r} is not a regular file")
                fh = tar.extractfile(member)
                assert fh is not None
                if name in ("manifest.json", "index.json", "oci-layout"):
                    if member.size > MAX_INDEX_BYTES:
                        raise ImageRejected(f"the archive's {name} is implausibly large")
                    docs[name] = _json(fh.read(), name)
                else:
                    sizes[name] = member.size
                    hashes[name] = _content_hash(fh)
                    if name.startswith("blobs/sha256/") and hashes[name] != name.removeprefix(
                        "blobs/sha256/"
                    ):
                        raise ImageRejected(
                            f"digest mismatch: blob {printable(name[13:], 64)} does not hash to its name"
                        )
    except TarBoundExceeded as exc:
        raise ImageRejected(f"the archive is refused: it holds {exc}") from None
    except tarfile.TarError as exc:
        raise ImageRejected(f"not an image archive: it is not a readable tar file ({exc})") from None
    _check_links(names, links, set(sizes) | set(docs))
    if "oci-layout" in docs and "index.json" in docs:
        info = ArchiveInfo("oci-archive", _oci_name(docs["index.json"]))
        _check_oci_documents(path, docs["index.json"], sizes, limits)
        return info
    if "manifest.json" in docs:
        info = ArchiveInfo("docker-archive", _docker_name(docs["manifest.json"], names))
        _check_docker_diff_ids(path, docs["manifest.json"][0], hashes, links, limits)
        return info
    raise ImageRejected(
        "not an image archive: no manifest.json (docker save) or oci-layout and index.json (OCI)"
    )


def _same_twice(name: str, member: tarfile.TarInfo, links: dict[str, str], dirs: set[str]) -> bool:
    """Whether a second member of this name is harmless: a folder again, or a blob again (each
    copy is hashed against its name, so both are the same bytes, whichever a reader takes)."""
    if member.isdir():
        return name in dirs
    return name.startswith("blobs/sha256/") and member.isfile() and name not in links and name not in dirs


def _check_links(names: set[str], links: dict[str, str], files: set[str]) -> None:
    """Refuse symbolic links that could make a member's path mean a place outside the archive
    once it is extracted, as skopeo extracts an OCI archive (to a folder under /var/tmp, as
    the control plane's user).

    Each link's own target is checked lexically when it is read, but links chain on disk:
    ``a -> .``, then ``a/b -> ..`` (lexically ``b -> ..`` from the archive's root, but
    written through ``a``), then ``b/c -> ..`` and ``b/c/x``: each target stayed inside by
    itself, and skopeo wrote ``x`` two folders above its extraction folder, ``b/c/e -> ..``
    one more, and so on to any path of the host (redteam round 19). An image archive needs
    links only as `docker save` once wrote them, a layer file naming another's
    (``<id>/layer.tar -> ../<id2>/layer.tar``): so a link must end, through at most 8 links,
    at a regular file of the archive, and no member (nor any link's target) may lie below
    a link."""
    for name in sorted(names | set(links.values())):
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in links:
                raise ImageRejected(
                    f"the archive member {printable(name)!r} lies below the symbolic link "
                    f"{printable(parent)!r}: re-export the image with docker save or skopeo copy"
                )
    for name in sorted(links):
        target = links[name]
        for _ in range(8):
            if target not in links:
                break
            target = links[target]
        if target not in files:
            raise ImageRejected(
                f"the archive member {printable(name)!r} is a symbolic link to {printable(links[name])!r}, "
                "which is not a file of the archive: re-export the image with docker save or skopeo copy"
            )


def _json(raw: bytes, name: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ImageRejected(f"the archive's {name} is not valid JSON") from None
    except RecursionError:  # a few KiB of '[' (redteam round 19: a 500)
        raise ImageRejected(f"the archive's {name} is JSON nested too deeply") from None


def _content_hash(fh: Any) -> str:
    """SHA-256 (hex) of a member's bytes as stored."""
    digest = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _uncompressed_hash(tar: tarfile.TarFile, member: str, limits: ImageLimits, budget: StreamBudget) -> str:
    """A compressed docker layer's diff_id, decompressing no more than a layer may hold, nor
    more than what is left of the image's ``budget``."""
    fh = tar.extractfile(member)
    assert fh is not None
    head = fh.read(2)
    fh.seek(0)
    stream: Any = gzip.GzipFile(fileobj=fh) if head == b"\x1f\x8b" else fh
    cap = stream_cap(limits.max_layer_bytes, limits.max_files)
    capped = CappedReader(budget.reader(stream), cap, "a layer")
    try:
        return _content_hash(capped)
    except TarBoundExceeded as exc:
        raise ImageRejected(f"the archive is refused: {exc}") from None
    except (OSError, EOFError):
        raise ImageRejected("not an image archive: a layer's gzip stream is damaged") from None


def _check_docker_diff_ids(
    path: Path, entry: dict[str, Any], hashes: dict[str, str], links: dict[str, str], limits: ImageLimits
) -> None:
    """Our own check of a docker archive before skopeo reads it: each layer's content hashes
    to the diff_id its config declares.

    The layer count is bounded first and the archive opened once for all of them: each
    compressed layer was looked up in an archive opened afresh, which reads every member's
    header again (tarfile's index of names), so a manifest listing thousands of tiny gzip
    layers held the import for a time quadratic in their number (redteam round 15)."""

    def resolve(name: str) -> str:
        name = name.lstrip("./") if name.startswith("./") else name
        for _ in range(8):
            if name not in links:
                return name
            name = links[name]
        raise ImageRejected("the docker archive's links form a loop")

    layers = [resolve(str(x)) for x in entry.get("Layers") or []]
    check_layer_count(len(layers), limits)
    budget = StreamBudget(limits)
    config_name = resolve(str(entry["Config"]))
    with tarfile.open(path, mode="r:", tarinfo=StrictTarInfo) as tar:
        fh = tar.extractfile(config_name)
        if fh is None:
            raise ImageRejected("the docker archive's config is not a regular file")
        config = _json(fh.read(MAX_INDEX_BYTES + 1), "config")
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            raise ImageRejected("digest mismatch: the config's diff_ids do not match the archive's layers")
        for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
            actual = hashes.get(layer)
            if actual is None:
                raise ImageRejected("the docker archive's manifest.json names a layer that is not a file")
            stored = f"sha256:{actual}" == diff_id
            if not stored and f"sha256:{_uncompressed_hash(tar, layer, limits, budget)}" != diff_id:
                raise ImageRejected(
                    f"digest mismatch: layer {i + 1}'s content does not match the config's diff_id"
                )


def _docker_name(manifest: Any, names: set[str]) -> str:
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        count = len(manifest) if isinstance(manifest, list) else 0
        raise ImageRejected(f"the docker archive must hold exactly one image (it holds {count})")
    entry = manifest[0]
    for part in [entry.get("Config"), *(entry.get("Layers") or [])]:
        if not isinstance(part, str) or part.lstrip("./") not in names:
            raise ImageRejected("the docker archive's manifest.json names a file the archive lacks")
    tags = entry.get("RepoTags")
    return str(tags[0]) if isinstance(tags, list) and tags and isinstance(tags[0], str) else ""


INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MAX_PLATFORMS = 64


def _check_oci_documents(
    path: Path, index: dict[str, Any], sizes: dict[str, int], limits: ImageLimits
) -> None:
    """Before skopeo parses them: the manifest (or the image index of a multi-platform
    image, and each manifest it lists) must be a present blob of plausible size, and an
    index may list at most `MAX_PLATFORMS` entries. skopeo would read a gigabyte of JSON
    into memory as readily as a kilobyte."""
    top = index["manifests"][0]
    blob = _document_blob(top, sizes, "manifest")
    if top.get("mediaType") not in INDEX_TYPES:
        with tarfile.open(path, mode="r:", tarinfo=StrictTarInfo) as tar:
            fh = tar.extractfile(blob)
            assert fh is not None
            manifest = _json(fh.read(), "manifest")
        check_layer_descriptors(manifest.get("layers") if isinstance(manifest, dict) else None, limits)
        return
    with tarfile.open(path, mode="r:", tarinfo=StrictTarInfo) as tar:
        fh = tar.extractfile(blob)
        assert fh is not None
        nested = _json(fh.read(), "image index")
    entries = nested.get("manifests") if isinstance(nested, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ImageRejected("the image index lists no manifests")
    if len(entries) > MAX_PLATFORMS:
        raise ImageRejected(f"the image index lists more than {MAX_PLATFORMS} manifests")
    for entry in entries:
        if (
            isinstance(entry, dict)
            and f"blobs/sha256/{str(entry.get('digest', '')).removeprefix('sha256:')}" in sizes
        ):
            _document_blob(entry, sizes, "manifest")


def _document_blob(descriptor: Any, sizes: dict[str, int], what: str) -> str:
    digest = str(descriptor.get("digest", "")) if isinstance(descriptor, dict) else ""
    name = "blobs/sha256/" + digest.removeprefix("sha256:")
    if not digest.startswith("sha256:"):
        raise ImageRejected(digest_problem(digest, f"the archive's index names its {what}"))
    if name not in sizes:
        raise ImageRejected(f"the archive's index names a {what} that is not in the archive")
    if sizes[name] > MAX_INDEX_BYTES:
        raise ImageRejected(f"the image's {what} is implausibly large ({sizes[name] >> 20} MiB of JSON)")
    return name


def _oci_name(index: Any) -> str:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) != 1 or not isinstance(manifests[0], dict):
        count = len(manifests) if isinstance(manifests, list) else 0
        raise ImageRejected(f"the OCI archive must hold exactly one image (its index lists {count})")
    notes = manifests[0].get("annotations")
    if not isinstance(notes, dict):  # absent, or not an object: the archive names no image
        return ""
    return str(notes.get("io.containerd.image.name") or notes.get("org.opencontainers.image.ref.name") or "")


def tar_layout_dir(folder: Path, dest: Path) -> None:
    """An OCI layout folder, packed as an OCI archive for upload (links kept as links)."""
    if not (folder / "oci-layout").is_file() or not (folder / "index.json").is_file():
        raise ImageRejected(f"{folder} is not an OCI layout folder (no oci-layout and index.json)")
    with tarfile.open(dest, "w") as tar:
        for item in sorted(folder.rglob("*")):
            tar.add(item, arcname=item.relative_to(folder).as_posix(), recursive=False)


def copy_stream(src: Any, dest: Path, limit: int) -> int:
    """Copy a file object to ``dest``, refusing past ``limit`` bytes."""
    written = 0
    with dest.open("wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise ImageRejected(f"the upload is larger than {limit >> 20} MiB")
            out.write(chunk)
    return written
