"""Copy an imported image by digest to the TRE's OCI registry (for Kubernetes and Docker),
then read the manifest back by digest and check it hashes to the same digest: the cluster
pulls ``registry/name@sha256:<digest>``, so what it runs is byte for byte what was approved.
"""

from __future__ import annotations

import hashlib

from tre.config import Settings
from tre.images.errors import ImageToolError
from tre.images.reference import canonical
from tre.images.store import ImageStore
from tre.images.tools import run_tool


def push_image(settings: Settings, name: str, digest: str) -> str:
    """Push and verify; returns the reference the cluster must use."""
    store = ImageStore(settings)
    if not store.has(digest):
        raise ImageToolError(f"image {digest} is not in the image store")
    registry = settings.image_registry.rstrip("/")
    tls = "true" if settings.image_registry_tls_verify else "false"
    # Registries address pushes by tag; the tag names the digest so it is never re-pointed.
    tag = digest.replace(":", "-")
    run_tool(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"--dest-tls-verify={tls}",
            f"oci:{store.layout(digest)}:image",
            f"docker://{registry}/{name}:{tag}",
        ]
    )
    reference = canonical(registry, name, digest)
    raw = run_tool(["skopeo", "inspect", "--raw", f"--tls-verify={tls}", f"docker://{reference}"])
    pulled = "sha256:" + hashlib.sha256(raw).hexdigest()
    if pulled != digest:
        raise ImageToolError(f"the registry returned a manifest with digest {pulled}, not {digest}")
    return reference
