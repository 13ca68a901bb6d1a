"""One job, one program, whichever backend runs it (review round 12).

A researcher's image with ``ENTRYPOINT ["/opt/app/run"]`` and a job ``-- seg.py --fast``:
the local sandbox ran ``/opt/app/run seg.py --fast`` and the Docker executor the same
(Docker keeps the image's Entrypoint and replaces its Cmd), but the Kubernetes executor set
the container's ``command``, which in Kubernetes replaces the image's ENTRYPOINT: the pod ran
``seg.py --fast``. Now it sets ``args`` (Kubernetes' Cmd), so all three run the same."""

from __future__ import annotations

from pathlib import Path

from tre.executors.base import ImageConfig, JobSpec
from tre.executors.bwrap import image_argv
from tre.executors.docker import container_options
from tre.executors.kubernetes import manifests as m
from tre.executors.kubernetes.config import KubernetesSettings

DIGEST = "@sha256:" + "a" * 64
CONFIG = ImageConfig(entrypoint=["/opt/app/run"], cmd=["--help"])
COMMAND = ["seg.py", "--fast"]


def _spec(tmp: Path) -> JobSpec:
    return JobSpec(
        job_id="e" * 32,
        project_id="lung",
        image="registry.tre.local/seg" + DIGEST,
        command=COMMAND,
        datasets=[],
        output_dir=tmp / "o",
        log_path=tmp / "l",
        image_config=CONFIG,
    )


def test_every_backend_keeps_the_entrypoint_and_replaces_the_cmd(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    # Local sandbox: the argv itself.
    assert image_argv(spec.command, CONFIG) == ["/opt/app/run", "seg.py", "--fast"]
    # Docker: Cmd is the command, the image's Entrypoint is not overridden.
    opts = container_options(spec, uid=10001, gid=10001)
    assert opts["command"] == COMMAND and "entrypoint" not in opts
    # Kubernetes: args (Cmd), never command (which would replace the Entrypoint).
    job = m.job(spec, KubernetesSettings(storage_class="fast-rwo"))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == COMMAND and "command" not in container
