"""Builders shared by the egress tests (no tests here).

Rows are inserted directly (users, project, dataset, grant, a succeeded job and its recorded
outputs) and the output files written under the jobs folder, as the worker would leave them,
so the airlock is exercised without running a sandbox.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy.orm import Session

from tests.ports import bound_socket
from tests.worlds import WorldFactory
from tre.config import Settings

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


def dicom_bytes(
    patient_name: str = "ANONYMOUS",
    patient_id: str = "ANON-001",
    *,
    rows: int = 64,
    cols: int = 64,
    extra_identifying: bool = True,
) -> bytes:
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


def seed_world(
    session: Session,
    settings: Settings,
    outputs: dict[str, bytes] | None = None,
    *,
    policy: str = "egress-test",
    job_state: str = "succeeded",
) -> World:
    """The egress tests' TRE, built by `tests.worlds.WorldFactory` (through the registry)."""
    world = World()
    world.outputs = (
        outputs
        if outputs is not None
        else {
            "tables/summary.csv": SAFE_CSV,
            "figures/overview.png": png_bytes(),
            "dicom/slice.dcm": dicom_bytes(),
        }
    )
    make = WorldFactory(session, actor=world.admin)
    make.users(
        {
            world.researcher: ["researcher"],
            world.outsider: ["researcher"],
            **{r: ["dac"] for r in world.reviewers},
            world.admin: ["admin"],
            "audrey": ["auditor"],
        }
    )
    make.project(world.project_id, "Lung nodule study", [world.researcher])
    # Beside the state directory, never in it: the registry refuses datasets that overlap it.
    data_dir = settings.home.parent / "datasets" / world.dataset_id
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "0001.dcm").write_bytes(dicom_bytes(PATIENT_NAME, PATIENT_ID, extra_identifying=False))
    make.dataset(world.dataset_id, data_dir, "LIDC subset", policy=policy, protected=settings.protected_paths)
    make.grant(world.project_id, world.dataset_id)
    world.job_id = make.finished_job(
        settings, world.project_id, world.researcher, [world.dataset_id], world.outputs, state=job_state
    )
    return world


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


class LiveServer:
    """The real app under uvicorn on 127.0.0.1 in a thread (for the browser and CLI tests)."""

    def __init__(self, app: object, port: int | None = None, sock: socket.socket | None = None) -> None:
        """``sock``: a socket the caller bound already (`tests.ports.bound_socket`), so that
        no other process can take the port in between; else the port is bound here, now."""
        import uvicorn

        self.sock = sock or bound_socket(port)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        # Waits on uvicorn's own flag; a server that ended (it could not serve) is said at once.
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"uvicorn ended before it served on port {self.port}")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
