"""An admin (or a careless one) must not register a dataset that exposes the platform itself.

Jobs read datasets with the worker's uid (host root in the embedded mode). Registering the
state directory, or a folder holding it, gave every granted project's jobs the token- and
audit-signing keys (mint dac/admin tokens: no two-person rule left), the database and other
projects' outputs. Before the fix such a registration was accepted whenever the folder held
at least one DICOM file somewhere below it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.worlds import job_body
from tre.executors.base import Executor, JobResult, JobSpec, RunControl
from tre.jobs.worker import Worker
from tre.states import JobState
from tre.store.db import session_scope
from tre.store.models import Dataset

URL = "/api/v1/datasets"


def _register(app_client, world, path: Path, ds_id: str):  # type: ignore[no-untyped-def]
    return app_client.post(URL, headers=world.headers["root"], json={"id": ds_id, "path": str(path)})


@pytest.mark.parametrize("where", ["home", "home-sub", "holder", "keys"])
def test_state_directory_cannot_be_registered(app_client, world, settings, tmp_path, where) -> None:  # type: ignore[no-untyped-def]
    imports = settings.home / "imports"
    imports.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(get_testdata_file("CT_small.dcm"), imports / "ct.dcm")
    shutil.copyfile(get_testdata_file("CT_small.dcm"), settings.keys_dir / "ct.dcm")
    path = {"home": settings.home, "home-sub": imports, "holder": tmp_path, "keys": settings.keys_dir}[where]
    resp = _register(app_client, world, path, f"bad-{where}")
    assert resp.status_code == 400, resp.text
    assert "overlaps" in resp.json()["detail"]


@pytest.mark.parametrize("path", ["/", "/etc", "/proc/self", "/root"])
def test_system_paths_cannot_be_registered(app_client, world, path) -> None:  # type: ignore[no-untyped-def]
    resp = _register(app_client, world, Path(path), "sys")
    assert resp.status_code == 400 and "overlaps" in resp.json()["detail"], resp.text


def test_a_plain_data_folder_is_still_accepted(app_client, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "lidc"
    folder.mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    resp = _register(app_client, world, folder, "lidc")
    assert resp.status_code == 201, resp.text


def test_symlink_to_the_state_directory_is_refused(app_client, world, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shutil.copyfile(get_testdata_file("CT_small.dcm"), settings.home / "ct.dcm")
    link = tmp_path / "innocent"
    link.symlink_to(settings.home)
    resp = _register(app_client, world, link, "innocent")
    assert resp.status_code == 400, resp.text


class RecordingExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, spec: JobSpec, control: RunControl) -> JobResult:
        self.ran.append(spec.job_id)
        return JobResult(JobState.succeeded, 0, "exited with code 0")


def test_worker_refuses_a_dataset_row_pointing_at_the_state_directory(  # type: ignore[no-untyped-def]
    app_client, world, engine, settings
) -> None:
    # A row registered before the check existed, or edited in the database.
    with session_scope(engine) as s:
        ds = s.get(Dataset, "ct1")
        assert ds is not None
        ds.path = str(settings.home)
    resp = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    assert resp.status_code == 201, resp.text
    executor = RecordingExecutor()
    Worker(settings, engine, executor=executor).run_until_idle(timeout_s=30)
    job = app_client.get(f"/api/v1/jobs/{resp.json()['id']}", headers=world.headers["alice"]).json()
    assert executor.ran == []
    assert job["state"] == "failed" and "refused to run" in job["reason"], job


def test_a_relative_dataset_path_is_refused_without_naming_the_servers_folder(
    app_client, world, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Found by the per-role schemathesis pass: "0" was resolved against the server's working
    directory and the 400 named it (``dataset path /srv/.../0 is not a directory``)."""
    monkeypatch.chdir(tmp_path)
    for relative in ("0", "data/ct", "./ct", "../ct"):
        resp = app_client.post(URL, headers=world.headers["root"], json={"id": "rel", "path": relative})
        assert resp.status_code == 422, resp.text
        assert resp.json()["errors"][0]["field"] == "path"
        assert "absolute path" in resp.text and str(tmp_path) not in resp.text
