"""Import, verify and unpack real images (busybox built with umoci, exported by skopeo)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.images.imagekit import MARKER
from tre.config import Settings
from tre.images.store import ImageStore


def _layout_digest(layout: Path) -> str:
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])


def test_docker_archive_is_imported_verified_and_unpacked(
    store: ImageStore, busybox_docker_tar: Path
) -> None:
    result = store.import_path(busybox_docker_tar)
    assert result.digest.startswith("sha256:") and store.has(result.digest)
    assert result.name == "tre-test/marker" and result.source_format == "docker-archive"
    assert result.layers == 1 and result.unpacked_size > 500_000  # busybox is ~2 MB
    rootfs = store.rootfs(result.digest)
    assert (rootfs / "marker.txt").read_text().strip() == MARKER
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert store.config(result.digest).env == {"TRE_IMAGE_ENV": "from-image"}
    assert store.config(result.digest).cmd == ["/bin/sh"]
    # Stored content-addressed: the layout folder is named by the manifest digest, and the
    # manifest blob in it hashes to that digest.
    layout = store.layout(result.digest)
    assert layout.name == result.digest.removeprefix("sha256:")
    assert _layout_digest(layout) == result.digest


def test_oci_archive_and_layout_keep_their_digest(
    store: ImageStore, busybox_layout: Path, busybox_oci_tar: Path
) -> None:
    want = _layout_digest(busybox_layout)
    assert store.import_path(busybox_oci_tar).digest == want
    assert store.import_path(busybox_layout).digest == want  # importing again is idempotent
    assert len(list((store.root / "oci").iterdir())) == 1


def test_rootfs_is_unpacked_once_and_remade_when_missing(store: ImageStore, busybox_docker_tar: Path) -> None:
    digest = store.import_path(busybox_docker_tar).digest
    rootfs = store.rootfs(digest)
    inode = rootfs.stat().st_ino
    assert store.rootfs(digest).stat().st_ino == inode  # not unpacked again
    import shutil

    shutil.rmtree(rootfs.parent)
    again = store.rootfs(digest)
    assert (again / "marker.txt").is_file() and again == rootfs


def test_unpacked_rootfs_runs_under_bwrap(store: ImageStore, busybox_docker_tar: Path) -> None:
    """The image's own files, not the host's: busybox reads the marker; host python is absent."""
    import subprocess

    rootfs = store.rootfs(store.import_path(busybox_docker_tar).digest)
    proc = subprocess.run(
        [
            "bwrap",
            "--ro-bind",
            str(rootfs),
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--unshare-all",
            "--die-with-parent",
            "/bin/sh",
            "-c",
            "cat /marker.txt; test -e /usr/bin/python3 && echo HOST || echo NOPY",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [MARKER, "NOPY"]


def test_store_paths_do_not_accept_bad_digests(settings: Settings) -> None:
    import pytest

    from tre.images.reference import BadReference

    with pytest.raises(BadReference):
        ImageStore(settings).layout("sha256:../../etc")
