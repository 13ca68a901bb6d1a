"""Fixtures for the image tests: a real busybox image built with umoci, exported by skopeo,
and a store in the test's state directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.images.imagekit import build_busybox_layout, docker_archive, have_tools, oci_archive
from tre.config import Settings
from tre.images.store import ImageStore


def require_tools() -> None:
    if not have_tools():
        if os.environ.get("CI"):
            pytest.fail(
                "skopeo/umoci/busybox-static missing in CI: scripts/install-system-deps installs them"
            )
        pytest.skip("skopeo, umoci or busybox-static not installed (run scripts/install-system-deps)")


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    return build_busybox_layout(tmp_path_factory.mktemp("busybox"))


@pytest.fixture(scope="session")
def busybox_docker_tar(busybox_layout: Path) -> Path:
    return docker_archive(busybox_layout, busybox_layout.parent / "busybox-docker.tar")


@pytest.fixture(scope="session")
def busybox_oci_tar(busybox_layout: Path) -> Path:
    return oci_archive(busybox_layout, busybox_layout.parent / "busybox-oci.tar")


@pytest.fixture
def store(settings: Settings) -> ImageStore:
    require_tools()
    return ImageStore(settings)


def store_is_empty(store: ImageStore) -> bool:
    """Nothing kept: no layout, no bundle, no scratch folder left behind."""
    kept = [
        p
        for sub in ("oci", "bundles", "tmp")
        for p in (store.root / sub).glob("*")
        if not p.name.startswith(".")
    ]
    return not kept
