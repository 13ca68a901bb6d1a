"""Images whose layers nest folders deeper than the walkers that handle a root filesystem
(``os.walk``, ``shutil.rmtree``: both recurse, one Python frame per level) are refused at
import with a reason, and nothing of them is kept (redteam round 14: a layer of 1,500
nested folders, a 3,000-byte path well under the path bound, made the unpack raise
RecursionError and left its half-made bundle behind)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from tests.images.conftest import store_is_empty
from tests.images.imagekit import add_file, crafted_docker_archive, layer_tar
from tre.images.errors import ImageRejected
from tre.images.layers import MAX_DEPTH
from tre.images.store import ImageStore


def _deep(depth: int, file_at_bottom: bool) -> bytes:
    def add(tar: tarfile.TarFile) -> None:
        path = "/".join(["d"] * depth)
        if file_at_bottom:
            add_file(tar, f"{path}/x.txt")
        else:
            info = tarfile.TarInfo(path)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)

    return layer_tar(add)


@pytest.mark.parametrize("file_at_bottom", [False, True], ids=["folders-only", "file-at-bottom"])
def test_a_layer_nested_past_the_depth_bound_is_refused(
    store: ImageStore, tmp_path: Path, file_at_bottom: bool
) -> None:
    archive = crafted_docker_archive(tmp_path / "deep.tar", [_deep(1500, file_at_bottom)])
    with pytest.raises(ImageRejected) as info:
        store.import_path(archive)
    assert "deeper than" in str(info.value) and "\n" not in str(info.value)
    assert store_is_empty(store)
    # No half-unpacked bundle either (those start with a dot).
    assert not list((store.root / "bundles").glob(".*partial")) if (store.root / "bundles").exists() else True


def test_a_layer_at_the_depth_bound_imports(store: ImageStore, tmp_path: Path) -> None:
    """The control case: a tree exactly as deep as allowed unpacks and can be removed."""
    archive = crafted_docker_archive(tmp_path / "ok.tar", [_deep(MAX_DEPTH - 1, file_at_bottom=True)])
    result = store.import_path(archive)
    assert (store.rootfs(result.digest) / "/".join(["d"] * (MAX_DEPTH - 1)) / "x.txt").is_file()


def test_an_image_stored_before_the_depth_bound_is_refused_at_unpack(
    store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image that entered the store before the bound (simulated: imported with the bound
    raised) and whose bundle is unpacked again later (bundles are a cache: removed, or on a
    new host) is checked again first, refused with the import's reason, and no bundle is made.
    Before, the stored layout went to umoci unchecked."""
    archive = crafted_docker_archive(tmp_path / "old.tar", [_deep(MAX_DEPTH + 40, file_at_bottom=True)])
    with monkeypatch.context() as before_the_bound:
        before_the_bound.setattr("tre.images.layers.MAX_DEPTH", 4000)
        digest = store.import_path(archive).digest
    hex_digest = digest.removeprefix("sha256:")
    # The bundle is a cache: made again on the next job's start.
    bundle = store.root / "bundles" / hex_digest
    shutil.rmtree(bundle)
    with pytest.raises(ImageRejected) as info:
        store.rootfs(digest)
    assert f"nested deeper than {MAX_DEPTH} folders" in str(info.value)
    assert not bundle.exists()
    assert not list((store.root / "bundles").glob(".*partial"))
    assert store.has(digest)  # the stored image itself stays: an admin decides (tre image rm)
