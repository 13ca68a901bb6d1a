"""A small populated TRE for the core tests: users, two projects, a DICOM dataset, grants."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tre import registry
from tre.config import Settings
from tre.images import catalog
from tre.store.base import utcnow
from tre.store.db import session_scope

IMAGE = "registry.tre.local/tre-job-cpu@sha256:" + "ab" * 32


@dataclass
class World:
    headers: dict[str, dict[str, str]]
    data_dir: Path
    grant_id: str


@pytest.fixture
def dicom_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dicom"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(get_testdata_file(name), folder / name)
    return folder


@pytest.fixture
def world(engine, token_for, dicom_dir: Path) -> World:  # type: ignore[no-untyped-def]
    users = {
        "root": ["admin"],
        "alice": ["researcher"],
        "bob": ["researcher"],
        "dana": ["dac"],
        "audrey": ["auditor"],
    }
    with session_scope(engine) as s:
        for u, roles in users.items():
            registry.create_user(s, "test", u, roles)
        registry.create_project(
            s,
            "root",
            "p1",
            "Project one",
            quota={"max_cpu": 2, "max_memory_mb": 2048, "max_concurrent_jobs": 3},
        )
        registry.create_project(s, "root", "p2", "Project two")
        registry.add_member(s, "root", "p1", "alice")
        registry.add_member(s, "root", "p2", "bob")
        registry.register_dataset(s, "root", "ct1", "CT sample", dicom_dir)
        grant = registry.grant_access(s, "root", "p1", "ct1", expires_at=utcnow() + timedelta(days=1))
        grant_id = grant.id
        # Ingress review: the job image is approved for p1 (registry-hosted, so "external").
        catalog.approve(s, Settings(), "root", IMAGE, "p1", external=True)
    headers = {u: {"Authorization": f"Bearer {token_for(u, *roles)}"} for u, roles in users.items()}
    return World(headers=headers, data_dir=dicom_dir, grant_id=grant_id)


def job_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "project_id": "p1",
        "image": IMAGE,
        "command": ["python3", "-c", "print('hi')"],
        "dataset_ids": ["ct1"],
        "cpu": 1,
        "memory_mb": 512,
        "time_limit_s": 30,
    }
    body.update(overrides)
    return body
