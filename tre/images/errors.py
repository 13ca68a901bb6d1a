"""Why an image was refused. One sentence, fixed vocabulary plus names the image itself
chose only after they were screened (`tre.images.reference.printable`)."""

from __future__ import annotations

from tre.errors import TreError


class ImageRejected(TreError):
    """The file is not an image we accept; nothing of it was stored."""

    status = 422
    title = "Image rejected"
    slug = "image-rejected"


class ReservedImageName(TreError):
    """A researcher's import under a name of the platform's own job images."""

    status = 422
    title = "Image name reserved"
    slug = "image-name-reserved"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"'{name}' is the name of the platform's own job images, which only admins import; "
            "import yours under a name of its own: tre image import FILE --name NAME"
        )


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
