"""The bounds an imported image must keep, from settings (so an admin can raise them)."""

from __future__ import annotations

from dataclasses import dataclass

from tre.config import Settings

MIB = 1 << 20


@dataclass(frozen=True)
class ImageLimits:
    max_upload_bytes: int
    max_layer_bytes: int
    max_unpacked_bytes: int
    max_files: int
    max_layers: int = 128

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(
            max_upload_bytes=settings.image_max_upload_mb * MIB,
            max_layer_bytes=settings.image_max_layer_mb * MIB,
            max_unpacked_bytes=settings.image_max_unpacked_mb * MIB,
            max_files=settings.image_max_files,
        )
