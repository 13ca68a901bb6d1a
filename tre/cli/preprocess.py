"""`tre preprocess`: the built-in preprocessing job (tre.kernels) submitted like any other.

It runs sandboxed next to the data with the same admission checks; the NIfTI volumes and
JSON sidecars it writes stay in the job's outputs until released through the airlock.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tre.cli.client import ApiClient, CliError
from tre.cli.jobs import follow_job
from tre.cli.output import console

CPU_JOB_IMAGE_NAME = "tre-job-cpu"


def default_job_image(client: ApiClient, project: str) -> str:
    """The platform's CPU job image as approved for ``project`` (`tre admin build-image`)."""
    usable = client.get("/api/v1/images", params={"usable_for": project})
    refs = sorted(
        i["reference"] for i in usable if f"/{CPU_JOB_IMAGE_NAME}@" in f"/{i.get('reference', '')}"
    )
    if not refs:
        raise CliError(
            f"no CPU job image is approved for project {project}; an admin builds and approves it "
            f"with `tre admin build-image --approve {project}` (or pass --image)"
        )
    return refs[-1]


def job_command(
    spacing: tuple[float, float, float],
    window: tuple[float, float],
    percentile_clip: tuple[float, float] | None,
    device: str,
) -> list[str]:
    cmd = [
        "python3",
        "-m",
        "tre.kernels.job",
        "--input",
        "/data",
        "--output",
        "/output",
        "--spacing",
        *(repr(float(s)) for s in spacing),
        "--window",
        *(repr(float(w)) for w in window),
        "--device",
        device,
    ]
    if percentile_clip is not None:
        cmd += ["--percentile-clip", *(repr(float(p)) for p in percentile_clip)]
    return cmd


def preprocess(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset to preprocess.")],
    project: Annotated[str, typer.Option("--project", "-p", help="Project the job runs for.")],
    spacing: Annotated[tuple[float, float, float], typer.Option(help="Target spacing x y z in mm.")] = (
        1.0,
        1.0,
        1.0,
    ),
    window: Annotated[tuple[float, float], typer.Option(help="HU window low high.")] = (-1000.0, 400.0),
    percentile_clip: Annotated[
        tuple[float, float] | None, typer.Option(help="nnU-Net style clip percentiles, e.g. 0.5 99.5.")
    ] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="Run the CUDA kernels on one GPU.")] = False,
    image: Annotated[str | None, typer.Option(help="Job image (default: the platform's CPU image).")] = None,
    memory_mb: Annotated[int, typer.Option("--memory-mb")] = 4096,
    time_limit: Annotated[int, typer.Option("--time-limit")] = 1800,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
) -> None:
    """Resample, window, normalise and crop every series of a dataset into NIfTI + JSON."""
    if spacing is None or any(s <= 0 for s in spacing):
        raise typer.BadParameter("spacing values must be positive", param_hint="--spacing")
    if window[0] >= window[1]:
        raise typer.BadParameter("window low must be below high", param_hint="--window")
    client = ApiClient()
    job = client.post(
        "/api/v1/jobs",
        json={
            "project_id": project,
            "image": image or default_job_image(client, project),
            "dataset_ids": [dataset],
            "command": job_command(spacing, window, percentile_clip, "cuda" if gpu else "cpu"),
            "cpu": 2,
            "memory_mb": memory_mb,
            "gpu": 1 if gpu else 0,
            "time_limit_s": time_limit,
            "output_limit_mb": 4096,
        },
    )
    console.print(f"submitted preprocessing job [bold]{job['id']}[/]")
    if wait:
        final = follow_job(client, job["id"])
        console.print(f"job {final['id']}: {final['state']} {final['reason']}")
        if final["state"] != "succeeded":
            raise typer.Exit(1)
