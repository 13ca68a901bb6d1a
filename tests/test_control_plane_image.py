"""The control plane's image (`sandbox_images/control-plane/Dockerfile` and its Docker-free
twin `tre.images.controlimage`) against what `k8s/base` asks of it.

Always: the user the pods run as, the commands the Deployments, probes and the `fetch-code`
init container call, the port, the writable paths the manifests mount, the image name pinned
in kustomization.yaml, pinned bases and no compiler. The real build (minutes: mmdebstrap,
wheels) runs with the job image's switch, TRE_TEST_JOB_IMAGE_BUILD=1, and starts the image's
`tre` under bubblewrap (`tre --help`, the worker's probe, `fetch-code`, `tre serve`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_sandbox_images import DIGEST_REF, Stage, parse
from tre.executors.kubernetes.config import KubernetesSettings
from tre.executors.kubernetes.manifests import code_init
from tre.images import controlimage

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "sandbox_images" / "control-plane" / "Dockerfile"
BASE = ROOT / "k8s" / "base"
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|cmake|rustc|cargo|python3-dev)\b")


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]


def _deployments() -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for name in ("api.yaml", "worker.yaml")
        for d in _docs(name)
        if d["kind"] == "Deployment"
    }


def _containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of every container that runs the control-plane image, plus the
    `fetch-code` init container the worker puts into job pods."""
    found = [(pod, c) for pod in _deployments().values() for c in pod["containers"]]
    init, _volumes, _mount = code_init(
        "a" * 64, KubernetesSettings(code_image=f"{controlimage.NAME}@sha256:{'0' * 64}")
    )
    job_pod = {"securityContext": {"runAsUser": 10001, "runAsGroup": 10001}}
    return [*found, (job_pod, init)]


def _final(stages: list[Stage]) -> Stage:
    return stages[-1]


def _env(stage: Stage) -> dict[str, str]:
    envs = " ".join(arg for op, arg in stage.instructions if op == "ENV")
    return dict(re.findall(r"(\w+)=(\S+)", envs))


def test_the_manifests_run_the_image_this_repository_builds() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert [i["name"] for i in kustomization["images"]] == [controlimage.NAME]
    for _pod, container in _containers()[:-1]:
        assert container["image"].startswith(controlimage.NAME + "@sha256:")
    params = _docs("admission-params.yaml")[0]["data"]
    assert params["code-image"].startswith(controlimage.NAME + "@sha256:")


def test_the_image_user_is_the_pods_user() -> None:
    uid, gid = (int(x) for x in controlimage.USER.split(":"))
    users = [x for op, x in _final(parse(DOCKERFILE.read_text())).instructions if op == "USER"]
    assert users == [controlimage.USER]
    for pod, container in _containers():
        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), container["name"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_every_command_the_manifests_call_is_in_the_image() -> None:
    """`tre` (API, worker), `python` (the worker's probes), `python3 -I` (fetch-code: -I
    ignores PYTHONPATH, so the packages must be on the default path)."""
    called: set[str] = set()
    for _pod, container in _containers():
        called.add(container["command"][0])
        for probe in ("livenessProbe", "readinessProbe"):
            exec_probe = container.get(probe, {}).get("exec")
            if exec_probe:
                called.add(exec_probe["command"][0])
    assert called == {"tre", "python", "python3"}
    # The recipe: Debian's python3 and python-is-python3, tre as a script, packages on the
    # interpreter's own path (not only PYTHONPATH).
    assert {"python3", "python-is-python3"} <= set(controlimage.PACKAGES)
    files = controlimage.image_files()
    assert files["usr/local/bin/tre"][1] == 0o755 and files["usr/local/bin/tre"][0].startswith(
        b"#!/usr/bin/python3"
    )
    assert (
        controlimage.SITE == "usr/local/lib/python3.11/dist-packages" and "PYTHONPATH" not in controlimage.ENV
    )
    for module in ("tre/cli/main.py", "tre/code/fetch.py", "tre/executors/kubernetes/__init__.py"):
        assert f"{controlimage.SITE}/{module}" in files
    assert any(n.startswith(f"{controlimage.SITE}/tre/store/migrations/versions/") for n in files)
    assert any(n.startswith(f"{controlimage.SITE}/egress_review/templates/") for n in files)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in files)
    # The Dockerfile: a virtual environment whose bin is first on PATH brings all three.
    text = DOCKERFILE.read_text()
    assert "python -m venv /opt/tre/venv" in text and "pip install --no-compile ." in text
    assert _env(_final(parse(text)))["PATH"].startswith("/opt/tre/venv/bin:")


def test_api_command_and_port() -> None:
    api = _deployments()["tre-api"]["containers"][0]
    port = api["ports"][0]["containerPort"]
    assert port == controlimage.PORT
    assert api["command"][:2] == ["tre", "serve"] and api["command"][
        api["command"].index("--port") + 1
    ] == str(port)
    assert "--no-worker" in api["command"]
    worker = _deployments()["tre-worker"]["containers"][0]
    assert worker["command"] == ["tre", "worker"]
    final = _final(parse(DOCKERFILE.read_text()))
    assert [x for op, x in final.instructions if op == "EXPOSE"] == [str(port)]


def test_only_the_mounted_paths_are_written() -> None:
    """The root file system is read-only: what tre writes (its state, caches, HOME, Python's
    bytecode) must be under the folders the manifests mount writable."""
    writable: set[str] = set()
    for name, pod in _deployments().items():
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env["TRE_HOME"] == controlimage.STATE, name
            for m in c["volumeMounts"]:
                if not m.get("readOnly") and "projected" not in volumes[m["name"]]:
                    writable.add(m["mountPath"])
    assert writable == {controlimage.STATE, controlimage.TMP}
    for env in (controlimage.ENV, _env(_final(parse(DOCKERFILE.read_text())))):
        assert env["TRE_HOME"] == controlimage.STATE
        assert env["HOME"].startswith(controlimage.TMP) and env["TRE_CACHE_DIR"].startswith(
            controlimage.TMP + "/"
        )
        assert env["PYTHONDONTWRITEBYTECODE"] == "1"
        assert env["TRE_POLICIES_DIR"] == "/" + controlimage.POLICIES
    assert set(controlimage.FOLDERS) >= {"tmp", controlimage.STATE.strip("/")}


def test_dockerfile_bases_are_pinned_and_no_compiler_is_left() -> None:
    stages = parse(DOCKERFILE.read_text())
    assert len(stages) == 2
    for s in stages:
        assert DIGEST_REF.match(s.base), s.base
    final = _final(stages)
    installs = " ".join(x for op, x in final.instructions if op == "RUN")
    assert not COMPILERS.search(installs), installs
    assert "--no-install-recommends" in installs and "rm -rf /var/lib/apt/lists/*" in installs
    assert "pip uninstall --yes pip" in installs
    # The programs tre runs: the same in both recipes.
    for package in ("skopeo", "umoci", "tesseract-ocr", "ca-certificates"):
        assert package in installs and package in controlimage.PACKAGES
    assert not COMPILERS.search(" ".join(controlimage.PACKAGES))


def test_requirements_are_tre_dependencies_closed_and_pinned() -> None:
    reqs = controlimage.python_requirements()
    names = {r.split("==")[0] for r in reqs}
    assert {"fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "psycopg-binary", "kubernetes"} <= names
    assert {"cryptography", "pydantic-core", "starlette"} <= names  # dependencies of dependencies
    assert not names & {"numba", "llvmlite", "pytest", "ruff", "mypy"}  # no JIT compiler, no dev tools
    assert all("==" in r for r in reqs)


def test_recipe_follows_the_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    first = json.dumps(controlimage.recipe(), sort_keys=True)
    files = controlimage.image_files()
    changed = dict(files)
    changed["usr/local/bin/tre"] = (b"#!/bin/sh\n", 0o755)
    monkeypatch.setattr(controlimage, "image_files", lambda: changed)
    assert json.dumps(controlimage.recipe(), sort_keys=True) != first


def test_deploy_doc_names_the_recipe_and_the_pinning() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    assert "tre admin build-control-image" in text and "sandbox_images/control-plane/Dockerfile" in text
    assert "kustomize edit set image ghcr.io/tre-project/tre@sha256:" in text


@pytest.mark.skipif(
    os.environ.get("TRE_TEST_JOB_IMAGE_BUILD") != "1",
    reason="set TRE_TEST_JOB_IMAGE_BUILD=1 (minutes, downloads Debian packages)",
)
def test_build_and_start_the_image(tmp_path: Path) -> None:
    from tre.config import Settings

    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache")
    built = controlimage.build_control_image(settings, tmp_path / "tre.oci.tar")
    assert built.digest.startswith("sha256:") and built.size > 0
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"oci-archive:{built.archive}"],
            capture_output=True,
            check=True,
        ).stdout
    )
    config = inspected["config"]
    assert config["User"] == controlimage.USER and f"{controlimage.PORT}/tcp" in config["ExposedPorts"]
    assert "TRE_HOME=/var/lib/tre" in config["Env"]
    steps = controlimage.smoke_test(built.layout)
    assert [s.split(":")[0] for s in steps] == [
        "tre --help",
        "worker probe",
        "fetch-code",
        "read-only root",
        "tre serve",
    ]
    again = controlimage.build_control_image(settings, tmp_path / "again.oci.tar")
    assert again.cached and again.digest == built.digest
    # The CLI prints the digest last, for scripts.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tre.cli.main",
            "admin",
            "build-control-image",
            "--no-smoke",
            "-o",
            str(tmp_path / "c.tar"),
        ],
        env={**os.environ, "TRE_HOME": str(settings.home), "TRE_CACHE_DIR": str(settings.cache_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == built.digest
