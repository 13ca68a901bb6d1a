"""The bounds an imported image must keep, from settings (so an admin can raise them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tre.config import Settings
from tre.images.errors import ImageRejected

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

    def image_stream_bytes(self) -> int:
        """Decompressed tar bytes all of an image's layers may take together: its files'
        data (`max_unpacked_bytes`), a header and padding per entry, and 1 MiB a layer for
        its end-of-archive record and whatever a writer pads after it."""
        return self.max_unpacked_bytes + 4096 * self.max_files + MIB * self.max_layers


class StreamBudget:
    """The decompressed bytes one image's layers are allowed, shared by all of its layers.

    Each layer's stream is capped at the layer bound, which with the default bounds lets a
    5.3 MiB gzip blob decompress to 5.15 GiB (zeros after the tar's end, named by its
    diff_id so every hash matches): 128 such layers were 659 GiB to decompress and hash,
    some 35 CPU-minutes at the 3.2 CPU-s a GiB measured, from a 680 MiB upload (redteam
    round 15). The whole image is held to `ImageLimits.image_stream_bytes` (9.3 GiB with the
    defaults, some 30 CPU-s)."""

    def __init__(self, limits: ImageLimits) -> None:
        self.cap = limits.image_stream_bytes()
        self.used = 0

    def charge(self, count: int) -> None:
        self.used += count
        if self.used > self.cap:
            raise ImageRejected(
                f"the image's layers decompress to more than {self.cap >> 20} MiB in all, more "
                "than their files, tar headers and padding can take (a compressed stream that "
                "goes on after its tar ends)"
            )

    def reader(self, raw: Any) -> BudgetedReader:
        return BudgetedReader(raw, self)


class BudgetedReader:
    """A read-only stream over ``raw`` whose bytes are charged to a `StreamBudget`."""

    def __init__(self, raw: Any, budget: StreamBudget) -> None:
        self.raw = raw
        self.budget = budget

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.raw.read(size)
        self.budget.charge(len(data))
        return data
