"""The server's disk fills up while it stores what a caller sent: a real, small tmpfs
mounted (as root) where the code store, the image store or the airlock's staging area keep
their files. Each case ends in a 507 problem that says the server's storage is full (not a
500, and never a 4xx blaming the caller's file), keeps nothing of the request (no partial
file, no row), and the same request succeeds once there is room again.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from egress_review.staging import output_file
from tests.conftest import World
from tests.worlds import WorldFactory
from tre.code.store import CodeStore
from tre.store.db import session_scope
from tre.store.models import CodeArchive, CodeUpload, EgressRequest

MiB = 1 << 20


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")


@pytest.fixture
def small_fs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a tmpfs of a given size on a folder; ``resize`` is the same folder remounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mounted: list[Path] = []

    def mount(where: Path, size: str) -> Path:
        if where in mounted:
            subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)
        else:
            _mount_tmpfs(where, size)
            mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def _code_archive(size: int) -> bytes:
    """A tar.gz of one file of random bytes (gzip cannot shrink it)."""
    buf = io.BytesIO()
    data = os.urandom(size)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("run.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _is_storage_full(resp) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 507, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["type"].endswith(":storage-full"), problem
    assert "storage is full" in problem["detail"], problem
    assert "/" not in problem["detail"], problem  # no server path
    assert resp.headers.get("retry-after"), resp.headers


@pytest.mark.parametrize(
    ("room", "size", "where"),
    [
        ("1m", 3 * MiB, "while the body streams in"),
        ("3m", 2 * MiB, "while it is unpacked and checked"),
    ],
)
def test_a_code_upload_on_a_full_disk(
    app_client, world: World, settings, engine, small_fs, room: str, size: int, where: str
) -> None:  # type: ignore[no-untyped-def]
    store = CodeStore(settings)
    small_fs(store.root, room)
    body = _code_archive(size)
    url = "/api/v1/code?project_id=p1"
    headers = {**world.headers["alice"], "Content-Type": "application/gzip"}
    _is_storage_full(app_client.post(url, content=body, headers=headers))
    assert _files_under(store.root) == [], where  # nothing half-written kept
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(CodeUpload)) == 0
        assert s.scalar(select(func.count()).select_from(CodeArchive)) == 0
    small_fs(store.root, "64m")  # an admin made room: the same upload now succeeds
    again = app_client.post(url, content=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["already_stored"] is False


def test_an_airlock_request_whose_files_do_not_fit_in_staging(
    app_client, world: World, settings, engine, small_fs
) -> None:  # type: ignore[no-untyped-def]
    """Files are frozen into staging before any row is written; the second does not fit:
    507, no request, and the first file's fresh copy is not left behind either."""
    files = {"a.bin": os.urandom(600 << 10), "b.bin": os.urandom(600 << 10)}
    with session_scope(engine) as s:
        job = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], files)
    small_fs(settings.staging_dir, "1m")
    body = {"job_id": job, "files": ["a.bin", "b.bin"], "justification": "two files"}
    _is_storage_full(app_client.post("/api/v1/egress/requests", headers=world.headers["alice"], json=body))
    assert _files_under(settings.staging_dir) == []
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(EgressRequest)) == 0
    small_fs(settings.staging_dir, "64m")
    again = app_client.post("/api/v1/egress/requests", headers=world.headers["alice"], json=body)
    assert again.status_code == 201, again.text
    assert len(_files_under(settings.staging_dir)) == 2


def test_a_request_refused_part_way_keeps_no_staged_copy(app_client, world: World, settings, engine) -> None:  # type: ignore[no-untyped-def]
    """The same all-or-nothing when the second file is refused (changed after the job): the
    first file's copy does not stay behind in staging."""
    files = {"a.csv": b"n\n1\n", "b.csv": b"n\n2\n"}
    with session_scope(engine) as s:
        job = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], files)
    output_file(settings.jobs_dir, job, "b.csv").write_bytes(b"n\n3\n")
    body = {"job_id": job, "files": ["a.csv", "b.csv"], "justification": "two files"}
    resp = app_client.post("/api/v1/egress/requests", headers=world.headers["alice"], json=body)
    assert resp.status_code == 409 and resp.json()["type"].endswith(":output-modified"), resp.text
    assert _files_under(settings.staging_dir) == []
