"""An image import on a full disk (a real small tmpfs under the image store, as root): a
507 problem saying the server's storage is full, never 422 "not a usable image" blaming the
upload (skopeo's and gzip's "no space left on device" were read as a damaged archive), nothing
kept, and the same import succeeds once there is room."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.api.test_disk_full import _is_storage_full
from tests.api.test_disk_full import small_fs as small_fs  # noqa: F401 - the fixture
from tests.images.conftest import store_is_empty
from tre.images.store import ImageStore
from tre.store.db import session_scope
from tre.store.models import Image


@pytest.mark.parametrize("gzipped", [False, True], ids=["tar", "tar.gz"])
@pytest.mark.parametrize("room_over_upload", [0.5, 1.2], ids=["upload", "conversion"])
def test_an_image_import_on_a_full_disk(  # type: ignore[no-untyped-def]
    app_client,
    world,
    settings,
    engine,
    small_fs,
    busybox_oci_tar: Path,
    tmp_path: Path,
    gzipped: bool,
    room_over_upload: float,
) -> None:
    upload = busybox_oci_tar
    if gzipped:
        upload = tmp_path / "busybox.tar.gz"
        with busybox_oci_tar.open("rb") as src, gzip.open(upload, "wb") as dst:
            shutil.copyfileobj(src, dst)
    store = ImageStore(settings)
    size = busybox_oci_tar.stat().st_size
    small_fs(store.root, f"{int(size * room_over_upload) // 4096 * 4}k")
    headers = {**world.headers["root"], "Content-Type": "application/x-tar"}
    body = upload.read_bytes()
    _is_storage_full(app_client.post("/api/v1/images", content=body, headers=headers))
    assert store_is_empty(store)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 0
    small_fs(store.root, "256m")
    again = app_client.post("/api/v1/images", content=body, headers=headers)
    assert again.status_code == 201, again.text
