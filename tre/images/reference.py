"""Image references: ``[registry/]name@sha256:<64 hex>``, and the names tre gives images.

An imported image is named under the TRE's own registry (`Settings.image_registry`) so the
same reference passes the dataset policies' allowlist (``registry.tre.local/*@sha256:*``),
runs on the local sandbox from the store, and is what Kubernetes pulls after `tre image push`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tre.errors import TreError

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME_PART = re.compile(r"[^a-z0-9._-]+")
MAX_NAME = 128
DEFAULT_IMAGE_NAME = "image"  # an archive that names no repository, imported without --name


class BadReference(TreError):
    status = 400
    title = "Bad image reference"
    slug = "bad-image-reference"


@dataclass(frozen=True)
class Reference:
    repository: str  # everything before '@' (may include a registry host)
    digest: str  # sha256:<hex>

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}"


def parse_reference(ref: str) -> Reference:
    """Split a digest-pinned reference; a bare ``sha256:<hex>`` has an empty repository."""
    ref = ref.strip()
    if DIGEST_RE.match(ref):
        return Reference("", ref)
    repository, sep, digest = ref.rpartition("@")
    if not sep or not DIGEST_RE.match(digest) or not repository:
        raise BadReference(f"{printable(ref)!r} is not pinned by digest (name@sha256:<64 hex>)")
    return Reference(repository, digest)


def check_digest(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise BadReference(f"{printable(digest)!r} is not a sha256 digest")
    return digest


def clean_name(raw: str) -> str:
    """A repository path from what an archive calls itself (``docker.io/library/x:tag`` ->
    ``library/x``): registry host and tag dropped, lower-case, safe characters only."""
    name = raw.strip().split("@", 1)[0]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if parts and ":" in parts[-1]:
        parts[-1] = parts[-1].split(":", 1)[0]
    cleaned = [p for p in (_NAME_PART.sub("-", part.lower()).strip(".-_") for part in parts) if p]
    return "/".join(cleaned)[:MAX_NAME].strip("/") or DEFAULT_IMAGE_NAME


# The platform's own job images (`tre admin build-image`: tre-job-cpu; the CUDA image,
# tre-job-cuda) are found by name (`tre preprocess` runs the one approved for the project).
PLATFORM_IMAGE_PREFIX = "tre-job-"


def names_platform_image(name: str) -> bool:
    """Whether a cleaned repository name is, or ends in, a name of the platform's job images.

    Why reserved: an admin approving ``registry.tre.local/tre-job-cpu@...`` takes it for the
    platform's image, and `tre preprocess` picks that name for every member of the project; a
    researcher's image under it (or under ``someone/tre-job-cpu``) would be run as the
    platform's. Only admins import under these names."""
    return name.rsplit("/", 1)[-1].startswith(PLATFORM_IMAGE_PREFIX)


def canonical(registry: str, name: str, digest: str) -> str:
    return f"{registry.rstrip('/')}/{name}@{digest}"


def printable(text: str, limit: int = 120) -> str:
    """Names from an archive are chosen by whoever built it: show them only as printable ASCII."""
    safe = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."
