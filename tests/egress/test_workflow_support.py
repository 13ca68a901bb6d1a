"""Builders shared by the egress tests (no tests here).

Rows are inserted directly (users, project, dataset, grant, a succeeded job and its recorded
outputs) and the output files written under the jobs folder, as the worker would leave them,
so the airlock is exercised without running a sandbox.
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy.orm import Session

from tre.config import Settings
from tre.store.models import (
    AccessGrant,
    Dataset,
    Job,
    JobOutput,
    Project,
    ProjectMember,
    User,
    UserRole,
)

PATIENT_NAME = "Smithfield^Jonah"
PATIENT_ID = "PX778812"

TEST_POLICY = """\
name: {name}
version: "{version}"
description: egress tests
required_reviews: {reviews}
dicom:
  attribute_present: flag
  private_tags: flag
"""


def write_policy(folder: Path, name: str = "egress-test", version: str = "3", reviews: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(TEST_POLICY.format(name=name, version=version, reviews=reviews))


def dicom_bytes(patient_name: str = "ANONYMOUS", patient_id: str = "ANON-001", *, rows: int = 64,
                cols: int = 64, extra_identifying: bool = True) -> bytes:
    """A small CT slice; with ``extra_identifying`` it keeps an institution name a check should name."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("slice.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    if extra_identifying:
        ds.InstitutionName = "St Elsewhere General Hospital"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    yy, xx = np.mgrid[0:rows, 0:cols]
    disc = ((yy - rows / 2) ** 2 + (xx - cols / 2) ** 2) < (rows / 3) ** 2
    ds.PixelData = np.where(disc, 1064, 24).astype(np.int16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png_bytes(size: int = 48) -> bytes:
    arr = (np.add.outer(np.arange(size), np.arange(size)) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


SAFE_CSV = b"group,count\nnodule,120\nno_nodule,340\n"
LEAKY_CSV = f"patient,volume_ml\n{PATIENT_ID},12.5\nPX000001,8.1\n".encode()


@dataclass
class World:
    project_id: str = "lung-study"
    job_id: str = ""
    dataset_id: str = "lidc"
    researcher: str = "alice"
    outsider: str = "bob"
    reviewers: tuple[str, ...] = ("dana", "dave", "dora")
    admin: str = "adam"
    outputs: dict[str, bytes] = field(default_factory=dict)

    def output_path(self, settings: Settings, rel: str) -> Path:
        return settings.jobs_dir / self.job_id / "output" / rel


def _user(session: Session, user_id: str, *roles: str) -> None:
    user = User(id=user_id, display_name=user_id.title())
    user.roles = [UserRole(role=r) for r in roles]
    session.add(user)


def seed_world(session: Session, settings: Settings, outputs: dict[str, bytes] | None = None,
               *, policy: str = "egress-test", job_state: str = "succeeded") -> World:
    world = World()
    world.outputs = outputs if outputs is not None else {
        "tables/summary.csv": SAFE_CSV,
        "figures/overview.png": png_bytes(),
        "dicom/slice.dcm": dicom_bytes(),
    }
    _user(session, world.researcher, "researcher")
    _user(session, world.outsider, "researcher")
    for r in world.reviewers:
        _user(session, r, "dac")
    _user(session, world.admin, "admin")
    _user(session, "audrey", "auditor")
    session.add(Project(id=world.project_id, name="Lung nodule study"))
    session.flush()
    session.add(ProjectMember(project_id=world.project_id, user_id=world.researcher))

    data_dir = settings.home / "datasets" / world.dataset_id
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "0001.dcm").write_bytes(dicom_bytes(PATIENT_NAME, PATIENT_ID, extra_identifying=False))
    session.add(Dataset(id=world.dataset_id, name="LIDC subset", path=str(data_dir), policy=policy))
    session.flush()
    now = datetime.now(UTC)
    session.add(AccessGrant(project_id=world.project_id, dataset_id=world.dataset_id, granted_by=world.admin,
                            expires_at=now + timedelta(days=30)))
    job = Job(project_id=world.project_id, submitted_by=world.researcher,
              image="registry/x@sha256:" + "0" * 64,
              command=["run"], dataset_ids=[world.dataset_id], state=job_state, exit_code=0,
              started_at=now, finished_at=now)
    session.add(job)
    session.flush()
    world.job_id = job.id
    for rel, data in world.outputs.items():
        path = world.output_path(settings, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        session.add(JobOutput(job_id=job.id, path=rel, size=len(data),
                              sha256=hashlib.sha256(data).hexdigest()))
    session.flush()
    return world


@pytest.fixture
def esettings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose policies folder holds the test policies (the repo's may change under us)."""
    write_policy(tmp_path / "policies")
    write_policy(tmp_path / "policies", "strict3", version="1", reviews=3)
    write_policy(tmp_path / "policies", "lenient1", version="1", reviews=1)
    settings.policies_dir = tmp_path / "policies"
    return settings


def with_egress_routes(app: FastAPI) -> FastAPI:
    """Include the airlock routers unless the app factory already does."""
    from egress_review.api import router as api_router
    from egress_review.panel import router as panel_router

    paths = {getattr(r, "path", "") for r in app.routes}
    if "/api/v1/egress/requests" not in paths:
        app.include_router(api_router)
    if "/panel/" not in paths:
        app.include_router(panel_router)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app under uvicorn on 127.0.0.1 in a thread (for the browser and CLI tests)."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
