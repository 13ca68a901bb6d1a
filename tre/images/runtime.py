"""What the worker needs from the image store for one job: the unpacked root filesystem
(local sandbox) and the image config, or nothing for an image that was approved as external
(it lives on the registry a cluster pulls from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tre.config import Settings
from tre.executors.base import ImageConfig
from tre.images.reference import BadReference, parse_reference
from tre.images.store import ImageStore


@dataclass(frozen=True)
class JobImage:
    rootfs: Path | None = None
    config: ImageConfig | None = None


def job_image(settings: Settings, image_ref: str, unpack: bool) -> JobImage:
    """``unpack`` for backends that run the image from this host (the local sandbox)."""
    try:
        digest = parse_reference(image_ref).digest
    except BadReference:
        return JobImage()
    store = ImageStore(settings)
    if not store.has(digest):
        return JobImage()
    return JobImage(rootfs=store.rootfs(digest) if unpack else None, config=store.config(digest))
