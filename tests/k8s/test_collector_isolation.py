"""The output collector never runs code a job wrote (issue 18, item 1).

The old collector ran ``python -m tre.executors.kubernetes.tarstream /output`` from the
image's ``WORKDIR /output``; ``-m`` puts the working directory first on ``sys.path``, so a
job that wrote ``/output/tre/__init__.py`` owned the tar stream. These tests first
reproduce that hijack with real Python processes, then run the command the executor now
sends (the packer's source under ``python3 -I -S``) over the same planted files, in the
worst case of a working directory and PYTHONPATH pointing into the job's files.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tre.executors.base import JobSpec
from tre.executors.kubernetes import collect, manifests, packer
from tre.executors.kubernetes.config import KubernetesSettings

ROOT = Path(__file__).resolve().parents[2]


def plant(out: Path, marker: Path) -> None:
    """What a hostile job leaves in /output: modules that would run if imported."""
    payload = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (out / "tre").mkdir(parents=True)
    (out / "tre" / "__init__.py").write_text(
        payload + "import sys; sys.stdout.write('FORGED'); raise SystemExit(0)\n"
    )
    for name in ("tarfile", "argparse", "stat", "sitecustomize", "usercustomize", "encodings_extra"):
        (out / f"{name}.py").write_text(payload)
    (out / "result.csv").write_text("a,b\n1,2\n")


def _run(argv: list[str], cwd: Path, out: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{out}{os.pathsep}{ROOT}", "PYTHONSTARTUP": str(out / "tarfile.py")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=60, check=False)


def test_the_old_collector_command_is_hijacked(tmp_path: Path) -> None:
    """Reproduction of the defect: the job's tre/__init__.py runs and forges the stream."""
    out, marker = tmp_path / "output", tmp_path / "pwned"
    plant(out, marker)
    proc = _run([sys.executable, "-m", "tre.executors.kubernetes.tarstream", str(out)], cwd=out, out=out)
    assert marker.exists() and "tre" in marker.read_text()
    assert proc.stdout == b"FORGED"


@pytest.mark.parametrize("cwd", ["/", "output"])
def test_the_collector_command_never_imports_from_output(tmp_path: Path, cwd: str) -> None:
    out, marker = tmp_path / "output", tmp_path / "pwned"
    plant(out, marker)
    argv = [
        sys.executable if a == "python3" else str(out) if a == "/output" else a
        for a in collect.packer_command(10_000)
    ]
    proc = _run(argv, cwd=Path("/") if cwd == "/" else out, out=out)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), marker.read_text()
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        names = tar.getnames()
        assert tar.extractfile("tre/__init__.py").read().startswith(b"open(")  # type: ignore[union-attr]
    # The planted modules travel as plain data, like every other output.
    assert {"result.csv", "tre", "tre/__init__.py", "tarfile.py", "sitecustomize.py"} <= set(names)


def test_the_collector_pod_runs_isolated_python_from_root() -> None:
    settings = KubernetesSettings()
    spec_pod = manifests.collector_pod(
        JobSpec(
            job_id="j1",
            project_id="p1",
            image="r.example.org/x@sha256:" + "1" * 64,
            command=["true"],
            datasets=[],
            output_dir=Path("/nonexistent/o"),
            log_path=Path("/nonexistent/l"),
        ),
        settings,
    )
    c = spec_pod["spec"]["containers"][0]
    assert c["workingDir"] == "/"
    assert c["command"][:3] == ["python3", "-I", "-S"]
    assert {"name": "PYTHONSAFEPATH", "value": "1"} in c["env"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["exec"]["command"][:3] == ["python3", "-I", "-S"]
    # A minimal interpreter image, never the job's image and without the tre package.
    assert c["image"].startswith("gcr.io/distroless/python3-debian12") and "tre-job" not in c["image"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/output"]["readOnly"] is True


def test_the_packer_imports_the_standard_library_only() -> None:
    """Its source runs in an image with no tre package: any other import would fail there."""
    tree = ast.parse(collect.PACKER_SOURCE)
    imported = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert collect.PACKER_SOURCE == Path(packer.__file__).read_text()


def test_the_packer_reports_only_counts_and_exit_codes(tmp_path: Path) -> None:
    """Nothing the job named reaches stderr (it ends up in logs, and error text must be fixed)."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "secret-patient-name.dcm").write_bytes(b"x" * 50)
    (out / "link-to-PATIENT").symlink_to("/etc/hostname")
    argv = [
        sys.executable if a == "python3" else str(out) if a == "/output" else a
        for a in collect.packer_command(10)
    ]
    proc = subprocess.run(argv, cwd="/", capture_output=True, timeout=60, check=False)
    assert proc.returncode == packer.EXIT_TOO_LARGE
    assert b"patient" not in proc.stderr.lower()
    argv = [
        sys.executable if a == "python3" else str(out) if a == "/output" else a
        for a in collect.packer_command(1000)
    ]
    proc = subprocess.run(argv, cwd="/", capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr == b"skipped 1 non-regular file\n"
