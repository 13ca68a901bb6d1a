"""A docker archive's layers are checked against their diff_ids before skopeo reads the
archive, with work linear in its size: its layer count is bounded first, and the archive is
opened once for all compressed layers (redteam round 15: each compressed layer opened the
archive afresh, and tarfile reads every member's header to find one by name, so a manifest
of many tiny gzip layers beside many filler members cost layers x members header reads,
hours for what the bounds allow; and a docker archive of thousands of layers was hashed
layer by layer and copied by skopeo before the count was refused)."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.images.imagekit import add_file, crafted_docker_archive, layer_tar, sha
from tre.config import Settings
from tre.images.archive import inspect_archive
from tre.images.errors import ImageRejected
from tre.images.limits import ImageLimits
from tre.tarbounds import StrictTarInfo


def _gzip_layers(count: int) -> tuple[list[bytes], list[str]]:
    plain = [layer_tar(lambda t, i=i: add_file(t, f"f{i}.txt", str(i).encode())) for i in range(count)]
    return [zlib.compress(p, 1, wbits=31) for p in plain], [sha(p) for p in plain]


def _with_fillers(archive: Path, count: int) -> Path:
    """Members no manifest names (an archive may hold up to `image_max_files` of them)."""
    with tarfile.open(archive, "a") as tar:
        for i in range(count):
            add_file(tar, f"filler/{i}", b"")
    return archive


@pytest.fixture
def header_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many tar headers the archive checks parse (a count of work, not a time)."""
    seen = [0]
    parse = StrictTarInfo.frombuf.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, buf: bytes, encoding: str, errors: str) -> Any:
        seen[0] += 1
        return parse(cls, buf, encoding, errors)

    monkeypatch.setattr(StrictTarInfo, "frombuf", classmethod(counting))
    return seen


def test_compressed_layers_are_hashed_in_one_pass_over_the_archive(
    tmp_path: Path, settings: Settings, header_reads: list[int]
) -> None:
    blobs, diff_ids = _gzip_layers(60)
    archive = crafted_docker_archive(tmp_path / "gz.tar", blobs, diff_ids)
    members = 60 + 2 + 600
    _with_fillers(archive, 600)
    info = inspect_archive(archive, ImageLimits.from_settings(settings))
    assert info.format == "docker-archive"
    # One walk to check the members, one to look the config and layers up: not one per layer
    # (before: 60 layers x 662 members, some 40,000 header reads).
    assert header_reads[0] <= 3 * members, header_reads[0]


def test_a_docker_archive_over_the_layer_bound_is_refused_before_its_layers_are_hashed(
    tmp_path: Path, settings: Settings, header_reads: list[int]
) -> None:
    limits = ImageLimits.from_settings(settings)
    blobs, diff_ids = _gzip_layers(limits.max_layers + 1)
    archive = crafted_docker_archive(tmp_path / "many.tar", blobs, diff_ids)
    with pytest.raises(ImageRejected) as info:
        inspect_archive(archive, limits)
    reason = str(info.value)
    assert f"{limits.max_layers + 1} layers, more than the {limits.max_layers} allowed" in reason
    assert header_reads[0] <= 2 * (limits.max_layers + 3), header_reads[0]
