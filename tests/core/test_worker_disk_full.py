"""The worker meets a full disk before the job can start: the job's code must be unpacked
again (its tree was removed) into a code store that has no room (a real small tmpfs, as
root). The job ends failed with a reason that says so in fixed words (no path, no errno
text), nothing half-unpacked stays, and the same job submitted again runs once there is room."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.api.test_disk_full import _code_archive, _files_under
from tests.api.test_disk_full import small_fs as small_fs  # noqa: F401 - the fixture
from tests.worlds import job_body
from tre.code.store import CodeStore
from tre.executors import reasons
from tre.jobs.worker import Worker

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


def test_a_job_whose_code_cannot_be_unpacked_for_lack_of_room(  # type: ignore[no-untyped-def]
    app_client, world, engine, settings, small_fs
) -> None:
    alice = world.headers["alice"]
    upload = app_client.post(
        "/api/v1/code?project_id=p1",
        content=_code_archive(2 << 20),
        headers={**alice, "Content-Type": "application/gzip"},
    )
    assert upload.status_code == 201, upload.text
    sha = upload.json()["sha256"]
    store = CodeStore(settings)
    shutil.rmtree(store.tree_path(sha))  # the worker must unpack it again
    small_fs(store.trees, "1m")
    body = job_body(code_hash=sha, command=["python3", "-c", "print('ran')"])
    first = app_client.post("/api/v1/jobs", headers=alice, json=body).json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=60)
    job = app_client.get(f"/api/v1/jobs/{first}", headers=alice).json()
    assert job["state"] == "failed", job
    assert job["reason"].startswith(reasons.STORAGE_FULL), job["reason"]
    assert "/" not in job["reason"].replace("(ref: ", "") and "Errno" not in job["reason"]
    assert _files_under(store.trees) == []  # no half-unpacked tree
    small_fs(store.trees, "64m")
    second = app_client.post("/api/v1/jobs", headers=alice, json=body).json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=60)
    job = app_client.get(f"/api/v1/jobs/{second}", headers=alice).json()
    assert job["state"] == "succeeded", job
