"""Why an image was refused. One sentence, fixed vocabulary plus names the image itself
chose only after they were screened (`tre.images.reference.printable`)."""

from __future__ import annotations

from tre.errors import TreError


class ImageRejected(TreError):
    """The file is not an image we accept; nothing of it was stored."""

    status = 422
    title = "Image rejected"
    slug = "image-rejected"


class ImageToolError(TreError):
    """skopeo or umoci is missing or failed on input we had already verified."""

    status = 500
    title = "Image tool failed"
    slug = "image-tool-failed"


class ImageQuotaExceeded(TreError):
    """The importer's images would hold more of the shared store than their quota allows."""

    status = 413
    title = "Image quota exceeded"
    slug = "image-quota-exceeded"
