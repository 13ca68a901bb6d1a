"""A dataset's policy is loaded when an admin registers it: a misspelt name or a policy file
with a mistake is refused then, as a problem document naming the file and the line, instead
of every later job on the dataset failing with "policy unavailable"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

URL = "/api/v1/datasets"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "lidc"
    folder.mkdir(parents=True)
    shutil.copyfile(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    return folder


def _register(app_client, world, folder: Path, policy: str):  # type: ignore[no-untyped-def]
    body = {"id": "lidc", "path": str(folder), "policy": policy}
    return app_client.post(URL, headers=world.headers["root"], json=body)


def test_a_policy_with_a_mistake_is_refused_naming_its_file_and_line(  # type: ignore[no-untyped-def]
    app_client, world, settings, tmp_path, data
) -> None:
    policies = tmp_path / "own-policies"
    policies.mkdir()
    (policies / "typo.yaml").write_text("name: typo\nversion: '1'\nsdc:\n  treshold: 5\n")
    settings.policies_dir = policies
    resp = _register(app_client, world, data, "typo")
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    detail = resp.json()["detail"]
    assert f"{policies / 'typo.yaml'}: line 4: sdc.treshold: unknown key" in detail, detail
    assert "lidc" not in {d["id"] for d in app_client.get(URL, headers=world.headers["root"]).json()}


def test_a_misspelt_policy_name_is_refused(app_client, world, data) -> None:  # type: ignore[no-untyped-def]
    resp = _register(app_client, world, data, "defualt")
    assert resp.status_code == 422, resp.text
    assert "defualt.yaml: no such policy; the policies in " in resp.json()["detail"]
    assert "default" in resp.json()["detail"].rsplit(":", 1)[1]  # what the admin meant
    assert _register(app_client, world, data, "default").status_code == 201
