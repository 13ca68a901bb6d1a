"""Push an imported image by digest to a real registry and read it back: the digest the
Kubernetes executor references is the digest that was imported and approved."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.registry_server import BINARY, RegistryServer
from tre.config import Settings
from tre.executors.base import JobSpec
from tre.executors.kubernetes import manifests
from tre.executors.kubernetes.config import KubernetesSettings
from tre.images.push import push_image
from tre.images.store import ImageStore


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    if shutil.which(BINARY) is None:
        if os.environ.get("CI"):
            pytest.fail("docker-registry missing in CI: scripts/install-system-deps installs it")
        pytest.skip("Debian's docker-registry is not installed (run scripts/install-system-deps)")
    server = RegistryServer(tmp_path / "registry")
    server.root.mkdir()
    server.start()
    yield server
    server.stop()


def test_push_by_digest_round_trips(
    settings: Settings, registry: RegistryServer, busybox_docker_tar: Path, tmp_path: Path
) -> None:
    cfg = settings.model_copy(update={"image_registry": registry.address, "image_registry_tls_verify": False})
    store = ImageStore(cfg)
    result = store.import_path(busybox_docker_tar)
    ref = push_image(cfg, result.name, result.digest)
    assert ref == f"{registry.address}/tre-test/marker@{result.digest}"

    # Read back by digest with skopeo: the manifest bytes hash to the imported digest...
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == result.digest
    # ...and a copy pulled from the registry is the same image, blob for blob.
    pulled = tmp_path / "pulled"
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{pulled}:x"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert json.loads((pulled / "index.json").read_text())["manifests"][0]["digest"] == result.digest

    # The Kubernetes executor's pod runs exactly that reference.
    spec = JobSpec(
        job_id="j1",
        project_id="p1",
        image=ref,
        command=["sh"],
        datasets=[],
        output_dir=tmp_path / "out",
        log_path=tmp_path / "log",
    )
    job = manifests.job(spec, KubernetesSettings())
    containers = job["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers if c["name"] == "job"] == [ref]


def test_push_to_an_unreachable_registry_is_one_line(settings: Settings, busybox_docker_tar: Path) -> None:
    from tests.images.registry_server import free_port
    from tre.images.errors import ImageToolError

    cfg = settings.model_copy(
        update={"image_registry": f"127.0.0.1:{free_port()}", "image_registry_tls_verify": False}
    )
    result = ImageStore(cfg).import_path(busybox_docker_tar)
    with pytest.raises(ImageToolError) as info:
        push_image(cfg, result.name, result.digest)
    assert "skopeo copy failed" in str(info.value) and "\n" not in str(info.value)


def test_push_through_the_api_and_on_approval(
    settings: Settings,
    engine,
    world,
    registry: RegistryServer,
    busybox_oci_tar: Path,  # type: ignore[no-untyped-def]
) -> None:
    from fastapi.testclient import TestClient

    from tre.api.app import create_app

    cfg = settings.model_copy(
        update={
            "image_registry": registry.address,
            "image_registry_tls_verify": False,
            "image_push_on_approve": True,
        }
    )
    with TestClient(create_app(cfg, engine)) as client:
        up = client.post(
            "/api/v1/images", headers=world.headers["alice"], content=busybox_oci_tar.read_bytes()
        )
        assert up.status_code == 201, up.text
        ref = up.json()["reference"]
        assert ref.startswith(f"{registry.address}/")
        # Researchers may not push; admins may, and approval pushes when configured.
        assert (
            client.post(
                "/api/v1/images/push", headers=world.headers["alice"], json={"reference": ref}
            ).status_code
            == 403
        )
        pushed = client.post("/api/v1/images/push", headers=world.headers["root"], json={"reference": ref})
        assert pushed.status_code == 200 and pushed.json()["reference"] == ref
        approved = client.post(
            "/api/v1/images/approvals",
            headers=world.headers["root"],
            json={"reference": ref, "project_id": "p1"},
        )
        assert approved.status_code == 201 and approved.json()["pushed_to"] == ref
