"""Code reaches every backend read-only at /code, its working directory: the Docker options,
the Kubernetes init container and volumes (validated, admitted by the policy, sent to the
recorded-API fake), and the fetcher that init container runs."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.code.hostile import file, folder, link, targz
from tests.k8s.celharness import JOB_CONTROLLER, admit, denials_after, params
from tests.k8s.conftest import kubernetes_validate, write_docs
from tests.k8s.fakekube import FakeApiServer, Scenario
from tests.k8s.test_admission_policy import controller_pod
from tests.k8s.test_executor_fake_api import SUCCESS, executor_for, make_tar, spec_for
from tests.k8s.test_manifests import SETTINGS
from tests.test_docker_executor import make_spec
from tre.executors.base import DatasetMount, RunControl
from tre.executors.docker import container_options
from tre.executors.kubernetes import manifests as m

SHA = "c0de" * 16


def test_docker_binds_code_read_only_as_the_working_directory(tmp_path: Path) -> None:
    plain = container_options(make_spec(tmp_path), uid=10001, gid=10001)
    code = container_options(
        make_spec(tmp_path, code_dir=tmp_path / "tree", code_hash=SHA), uid=10001, gid=10001
    )
    assert plain["working_dir"] == "/output" and str(tmp_path / "tree") not in plain["volumes"]
    assert code["working_dir"] == "/code"
    assert code["volumes"] == {**plain["volumes"], str(tmp_path / "tree"): {"bind": "/code", "mode": "ro"}}
    assert {k: v for k, v in code.items() if k not in ("working_dir", "volumes")} == {
        k: v for k, v in plain.items() if k not in ("working_dir", "volumes")
    }


def test_kubernetes_job_gets_code_from_an_init_container(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, code_hash=SHA, datasets=[DatasetMount("lidc", pvc_name="dataset-lidc")])
    job = m.job(spec, SETTINGS)
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert (
        init["name"] == "fetch-code"
        and init["image"] == SETTINGS.code_image == params()["data"]["code-image"]
    )
    assert init["command"] == [
        "python3",
        "-I",
        "-m",
        "tre.code.fetch",
        "--sha256",
        SHA,
        "--archive",
        "/code-archive/code.tar.gz",
        "--into",
        "/code/tree",
        "--max-mb",
        "1024",
    ]
    assert init["securityContext"]["readOnlyRootFilesystem"] and init["securityContext"]["capabilities"] == {
        "drop": ["ALL"]
    }
    assert init["resources"]["requests"] == init["resources"]["limits"]
    # It sees only this job's archive (subPath), read-only, and writes only the code emptyDir.
    assert init["volumeMounts"] == [
        {
            "name": "code-archive",
            "mountPath": "/code-archive/code.tar.gz",
            "subPath": f"archives/{SHA}.tar.gz",
            "readOnly": True,
        },
        {"name": "code", "mountPath": "/code"},
    ]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["code-archive"]["persistentVolumeClaim"] == {"claimName": "tre-code", "readOnly": True}
    assert params()["data"]["code-claim"] == SETTINGS.code_claim_name
    assert volumes["code"]["emptyDir"] == {"sizeLimit": "1024Mi"}
    (container,) = pod["containers"]
    assert container["workingDir"] == "/code"
    assert {"name": "code", "mountPath": "/code", "subPath": "tree", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert not any(vm["name"] == "code-archive" for vm in container["volumeMounts"])
    kubernetes_validate([write_docs(tmp_path / "job.yaml", [job])])

    # The admission policy admits it, from the worker and as the Job controller's pod ...
    verdict = admit(job)
    assert verdict.matched and verdict.allowed, verdict.denials
    assert admit(controller_pod(job), username=JOB_CONTROLLER).allowed

    # ... and refuses the code store anywhere else, or whole, or writable.
    def denied(mutate) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
        return denials_after(job, mutate)

    assert denied(
        lambda p: p["containers"][0]["volumeMounts"].append(
            {"name": "code-archive", "mountPath": "/store", "readOnly": True}
        )
    )
    assert denied(lambda p: p["initContainers"][0]["volumeMounts"][0].pop("subPath"))
    assert denied(lambda p: p["initContainers"][0]["volumeMounts"][0].pop("readOnly"))
    assert denied(lambda p: p["volumes"][-2]["persistentVolumeClaim"].pop("readOnly"))
    assert denied(lambda p: p["volumes"][-2]["persistentVolumeClaim"].update(claimName="tre-state"))
    assert denied(lambda p: p["initContainers"][0].update(image=SETTINGS.collector_image))
    assert denied(lambda p: p["containers"][0]["volumeMounts"][-1].pop("readOnly"))

    plain = m.job(spec_for(tmp_path), SETTINGS)["spec"]["template"]["spec"]
    assert "initContainers" not in plain and plain["containers"][0]["workingDir"] == "/output"
    with pytest.raises(ValueError, match="SHA-256"):
        m.job(spec_for(tmp_path, code_hash="../../etc/passwd"), SETTINGS)


def test_kubernetes_executor_sends_the_code_init_container(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, logs=b"ok\n", output_tar=make_tar({"r.txt": b"1\n"}))
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path, code_hash=SHA), RunControl())
        sent = server.calls("POST", r"/jobs$")[0].body
    assert result.state == "succeeded", result.reason
    pod = sent["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["fetch-code"]
    assert pod["initContainers"][0]["command"][5] == SHA
    assert pod["containers"][0]["workingDir"] == "/code"


def _fetch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tre.code.fetch", *args], capture_output=True, text=True, timeout=60
    )


def test_fetcher_verifies_the_hash_and_unpacks_with_the_same_checks(tmp_path: Path) -> None:
    data = targz(folder("lib"), file("lib/a.py", b"A = 1\n", mode=0o775), file("run.py"))
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()

    ok = _fetch("--sha256", sha, "--archive", str(archive), "--into", str(tmp_path / "code"), "--max-mb", "1")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "code" / "lib" / "a.py").read_bytes() == b"A = 1\n"
    assert stat.S_IMODE(os.stat(tmp_path / "code" / "lib" / "a.py").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "code" / "lib").st_mode) == 0o755

    wrong = _fetch(
        "--sha256", "0" * 64, "--archive", str(archive), "--into", str(tmp_path / "w"), "--max-mb", "1"
    )
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1
    assert f"SHA-256 is {sha}, not {'0' * 64}" in wrong.stderr and not (tmp_path / "w").exists()

    hostile = targz(link("etc", "/etc"))
    archive.write_bytes(hostile)
    bad = _fetch(
        "--sha256",
        hashlib.sha256(hostile).hexdigest(),
        "--archive",
        str(archive),
        "--into",
        str(tmp_path / "h"),
        "--max-mb",
        "1",
    )
    assert (
        bad.returncode == 1 and "points to an absolute path" in bad.stderr and not (tmp_path / "h").exists()
    )

    big = targz(file("zeros.bin", b"\0" * (3 << 20)))
    archive.write_bytes(big)
    over = _fetch(
        "--sha256",
        hashlib.sha256(big).hexdigest(),
        "--archive",
        str(archive),
        "--into",
        str(tmp_path / "b"),
        "--max-mb",
        "2",
    )
    assert over.returncode == 1 and "unpacks to more than 2 MiB" in over.stderr
