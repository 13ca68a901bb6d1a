"""The shared code store is bounded per project and cleans up after crashes: distinct
archives, each within the per-upload quota, would otherwise fill the control plane's disk,
and an upload or unpack killed mid-way would leave its files for ever."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.code.hostile import file, targz
from tre.api.app import create_app
from tre.code.archive import CodeLimits
from tre.code.store import STALE_S, CodeStore
from tre.config import Settings

GZ = {"Content-Type": "application/gzip"}


def _upload(client: TestClient, headers: dict[str, str], data: bytes, project: str = "p1"):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/code", params={"project_id": project}, content=data, headers={**headers, **GZ}
    )


def test_a_projects_uploads_are_bounded_in_the_shared_store(settings: Settings, engine, world) -> None:  # type: ignore[no-untyped-def]
    small = settings.model_copy(update={"code_max_store_mb_per_project": 1})
    one = targz(file("a.bin", os.urandom(300_000)))
    two = targz(file("b.bin", os.urandom(300_000)))
    store = CodeStore(small)
    with TestClient(create_app(small, engine)) as client:
        assert _upload(client, world.headers["alice"], one).status_code == 201
        assert _upload(client, world.headers["alice"], one).status_code == 201  # the same again: no cost
        refused = _upload(client, world.headers["alice"], two)
        assert refused.status_code == 413, refused.text
        assert "more than 1 MiB of the code store" in refused.json()["detail"]
        assert len(list(store.archives.iterdir())) == 1 and len(list(store.trees.iterdir())) == 1
        # Another project has its own share.
        assert _upload(client, world.headers["bob"], two, project="p2").status_code == 201


def test_a_full_project_is_refused_before_the_body_is_read(settings: Settings, engine, world) -> None:  # type: ignore[no-untyped-def]
    tiny = settings.model_copy(update={"code_max_store_mb_per_project": 0})
    with TestClient(create_app(tiny, engine)) as client:
        r = _upload(client, world.headers["alice"], targz(file("a.py")))
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    incoming = CodeStore(tiny).incoming
    assert not incoming.exists() or list(incoming.iterdir()) == []


def test_what_a_crashed_upload_or_unpack_left_is_swept(settings: Settings, tmp_path: Path) -> None:
    store = CodeStore(settings)
    store.ensure_dirs()
    upload = store.incoming / "upload-crashed.tar.gz"
    upload.write_bytes(b"x" * 100)
    partial = store.trees / (".0123456789ab-crashed")
    (partial / "tree").mkdir(parents=True)
    running = store.incoming / "upload-running.tar.gz"
    running.write_bytes(b"y")
    past = time.time() - STALE_S - 60
    for path in (upload, partial):
        os.utime(path, (past, past))
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(targz(file("a.py")))
    store.store_file(archive, CodeLimits())
    assert not upload.exists() and not partial.exists() and running.exists()
