"""Images whose layers nest folders deeper than the walkers that handle a root filesystem
(``os.walk``, ``shutil.rmtree``: both recurse, one Python frame per level) are refused at
import with a reason, and nothing of them is kept (redteam round 14: a layer of 1,500
nested folders, a 3,000-byte path well under the path bound, made the unpack raise
RecursionError and left its half-made bundle behind)."""

from __future__ import annotations

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
