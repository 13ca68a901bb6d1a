"""`tre preprocess`: the built-in preprocessing job (tre.kernels) submitted like any other.

One job preprocesses every series of a dataset (a cohort): it runs sandboxed next to the data
with the same admission checks, and the volumes, JSON sidecars and ``manifest.json`` it writes
stay in the job's outputs until released through the airlock. Its resource limits default to
the project's quota (a cohort is a long, memory-hungry job; the quota is what the admin
granted), and any of them can be lowered on the command line.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Annotated, Any

import typer

from tre.cli.client import ApiClient, CliError
from tre.cli.jobs import follow_job, nothing_submitted_on_interrupt, reattach_on_interrupt
from tre.cli.output import console, untrusted
from tre.cli.resolve import resolve_input_job
from tre.kernels.output_choices import DEFAULT_MAX_ERROR, DTYPES, output_max_error
from tre.kernels.params import PreprocessParams

CPU_JOB_IMAGE_NAME = "tre-job-cpu"


def default_job_image(client: ApiClient, project: str) -> str:
    """The platform's CPU job image as approved for ``project`` (`tre admin build-image`)."""
    usable = client.get("/api/v1/images", params={"usable_for": project})
    # By name: only admins import under it (`tre.images.reference.names_platform_image`) or
    # approve an external one (ghcr.io/tre-project/tre-job-cpu@...); the newest import.
    builds = sorted(
        (i.get("imported_at") or "", i["reference"])
        for i in usable
        if str(i.get("name", "")).rsplit("/", 1)[-1] == CPU_JOB_IMAGE_NAME
    )
    refs = [ref for _, ref in builds]
    if not refs:
        raise CliError(
            f"no CPU job image is approved for project {project}; an admin builds and approves it "
            f"with `tre admin build-image --approve {project}` (or pass --image)"
        )
    return refs[-1]


FORMATS = ("nii.gz", "nii", "zarr")


def job_command(
    spacing: tuple[float, float, float],
    window: tuple[float, float],
    percentile_clip: tuple[float, float] | None,
    device: str,
    fmt: str = "nii.gz",
    workers: int = 0,
    dtype: str = "float32",
    max_error: float | None = None,
    resume_from: str | None = None,
) -> list[str]:
    """The in-sandbox command line of the job (``python3 -m tre.kernels.job``).

    ``workers``: decode/compress threads, normally the job's CPU limit (0: the job decides).
    ``dtype`` / ``max_error``: the output's stored type and, for int16, its error bound
    (`tre.kernels.quantise`); float32 adds nothing, so the command is as before.
    ``resume_from``: an ended job's id, whose outputs the job reads at /inputs/<id> and whose
    finished series it copies instead of processing them (`tre.kernels.carry_over`).
    """
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
        "--format",
        fmt,
    ]
    if workers > 0:
        cmd += ["--workers", str(int(workers))]
    if percentile_clip is not None:
        cmd += ["--percentile-clip", *(repr(float(p)) for p in percentile_clip)]
    if dtype != "float32":
        cmd += ["--dtype", dtype]
        if max_error is not None:
            cmd += ["--max-error", repr(float(max_error))]
    if resume_from is not None:
        cmd += ["--resume-from", f"/inputs/{resume_from}"]  # where input jobs are (tre.jobs.lineage)
    return cmd


def _limit(name: str, asked: int | float | None, quota: int | float) -> Any:
    """The asked value, or the project's quota when none was asked; never above the quota."""
    if asked is None:
        return quota
    if asked > quota:
        raise typer.BadParameter(f"the project's quota allows at most {quota:g}", param_hint=name)
    return asked


def job_request(
    project: dict[str, Any],
    dataset: str,
    command: list[str],
    *,
    image: str,
    gpu: bool,
    cpu: float | None = None,
    memory_mb: int | None = None,
    time_limit: int | None = None,
    output_limit_mb: int | None = None,
) -> dict[str, Any]:
    """Body of POST /api/v1/jobs with limits taken from ``project`` (GET /api/v1/projects/ID)."""
    if gpu and int(project["max_gpu"]) < 1:
        raise typer.BadParameter("the project's quota allows no GPU", param_hint="--gpu")
    return {
        "project_id": project["id"],
        "image": image,
        "dataset_ids": [dataset],
        "command": command,
        "cpu": _limit("--cpu", cpu, float(project["max_cpu"])),
        "memory_mb": _limit("--memory-mb", memory_mb, int(project["max_memory_mb"])),
        "gpu": 1 if gpu else 0,
        "time_limit_s": _limit("--time-limit", time_limit, int(project["max_time_s"])),
        "output_limit_mb": _limit("--output-limit-mb", output_limit_mb, int(project["max_output_mb"])),
    }


def check_recipe(
    spacing: tuple[float, float, float] | None,
    window: tuple[float, float],
    percentile_clip: tuple[float, float] | None,
) -> None:
    """Refuse the recipe here, in one line, with the job's own checks (`PreprocessParams`):
    NaN passed ``s <= 0`` and ``lo >= hi`` alike, and the job then failed in the sandbox
    after the wait for admission (the percentile clip was not checked here at all)."""
    if spacing is None or not all(0 < s < math.inf for s in spacing):
        raise typer.BadParameter("spacing values must be positive, finite numbers", param_hint="--spacing")
    if not (all(math.isfinite(w) for w in window) and window[0] < window[1]):
        raise typer.BadParameter("window low must be below high (finite numbers)", param_hint="--window")
    try:
        PreprocessParams(spacing=spacing, window=window, percentile_clip=percentile_clip)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--percentile-clip") from None


def check_output_dtype(dtype: str, max_error: float | None) -> None:
    """Refuse the output type and error bound here, in one line, with the job's own checks
    (`tre.kernels.output_choices.output_max_error`), before the job waits for admission."""
    if dtype not in DTYPES:
        raise typer.BadParameter(f"use one of {', '.join(DTYPES)}", param_hint="--dtype")
    try:
        output_max_error(dtype, max_error)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-error") from None


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
    fmt: Annotated[
        str, typer.Option("--format", help="nii.gz (fast gzip), nii (uncompressed) or zarr (chunked).")
    ] = "nii.gz",
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype",
            help="Output voxels: float32 (exact) or int16 (scaled per series within --max-error).",
        ),
    ] = "float32",
    max_error: Annotated[
        float | None,
        typer.Option(
            "--max-error",
            help=f"int16 only: largest error after decoding, z-score units (default {DEFAULT_MAX_ERROR:g}).",
        ),
    ] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="Run the CUDA kernels on one GPU.")] = False,
    image: Annotated[str | None, typer.Option(help="Job image (default: the platform's CPU image).")] = None,
    cpu: Annotated[float | None, typer.Option("--cpu", help="CPUs (default: the project's quota).")] = None,
    memory_mb: Annotated[
        int | None, typer.Option("--memory-mb", help="Memory in MiB (default: the project's quota).")
    ] = None,
    time_limit: Annotated[
        int | None, typer.Option("--time-limit", help="Seconds (default: the project's quota).")
    ] = None,
    output_limit_mb: Annotated[
        int | None, typer.Option("--output-limit-mb", help="Output MiB (default: the project's quota).")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="JOB",
            help="Carry on a preprocessing job that ended early (failed, timed out, cancelled): "
            "its finished series of the same recipe are copied, checked by hash, not redone.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
) -> None:
    """Resample, window, normalise and crop every series of a dataset (one cohort job)."""
    check_recipe(spacing, window, percentile_clip)
    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    check_output_dtype(dtype, max_error)
    client = ApiClient()
    with nothing_submitted_on_interrupt():
        quota = client.get(f"/api/v1/projects/{project}")
        cpus = _limit("--cpu", cpu, float(quota["max_cpu"]))
        resumed = resolve_input_job(client, resume) if resume is not None else None
        device = "cuda" if gpu else "cpu"
        body = job_request(
            quota,
            dataset,
            job_command(
                spacing,
                window,
                percentile_clip,
                device,
                fmt,
                math.ceil(cpus),
                dtype,
                max_error,
                resume_from=resumed,
            ),
            image=image or default_job_image(client, project),
            gpu=gpu,
            cpu=cpus,
            memory_mb=memory_mb,
            time_limit=time_limit,
            output_limit_mb=output_limit_mb,
        )
        if resumed is not None:
            body["resume_job_id"] = resumed
    job = client.post("/api/v1/jobs", json=body)
    with reattach_on_interrupt(job["id"]):  # from the moment the job exists
        console.print(f"submitted preprocessing job [bold]{job['id']}[/]")
        if not wait:
            console.print(f"follow it with: tre logs {job['id']} -f", highlight=False, soft_wrap=True)
            return
        final = follow_job(client, job["id"])
        console.print(f"job {final['id']}: {final['state']} {untrusted(final['reason'])}", highlight=False)
        summary = series_summary(client.text(f"/api/v1/jobs/{job['id']}/logs"))
        if summary is not None:
            console.print(summary_line(final["id"], *summary), highlight=False, soft_wrap=True)
        hint = unrecorded_hint(str(final.get("reason") or ""))
        if hint is not None:
            console.print(hint, highlight=False, soft_wrap=True)
        if final["state"] != "succeeded":
            raise typer.Exit(1)
        console.print(
            train_hint(project, dataset, final["id"], body["image"]), highlight=False, soft_wrap=True
        )


def train_hint(project: str, dataset: str, job_id: str, image: str) -> str:
    """The one command that trains on the preprocessed volumes: a later job reads this job's
    outputs read-only at /inputs/<job id>, under the dataset's grant and policies."""
    return (
        f"train on the outputs (read-only at /inputs/{job_id}; its manifest.json maps each series "
        "to its files, series/series-NNNNN.*):\n"
        f"tre submit -p {shlex.quote(project)} -d {shlex.quote(dataset)} --input-job {job_id} "
        f"--image {shlex.quote(image)} --code . -- python3 train.py"
    )


# The worker's words in a job's reason when files were past the policy's limit (tre.jobs.worker).
_UNRECORDED = re.compile(r"\bsome output files were not recorded\b")


def unrecorded_hint(reason: str) -> str | None:
    """What files left unrecorded mean for a preprocessing job, when its reason says some were.

    Why: a cohort writes 2 files per series and the manifest, and the policy records 200 by
    default, so from ~100 series on this is the normal case, not a failure; the CLI cannot
    tell before the job (a dataset's policy limits are not shown to researchers)."""
    m = _UNRECORDED.search(reason)
    if m is None:
        return None
    return (
        "output files past the dataset policy's job.max_output_files were not recorded: "
        "they stay readable by a later --input-job job (manifest.json, always recorded, lists every "
        "series' files) but cannot be listed or released; the data holder can raise job.max_output_files"
    )


# The job's last line (tre.kernels.job), fixed format: it passes the log screen whole.
_DONE = re.compile(r"^done (\d+) series: ok (\d+) resumed (\d+) failed (\d+)", re.M)


def series_summary(log: str) -> tuple[int, int, int] | None:
    """(series, preprocessed or resumed, failed) from the job's screened log, if it got there."""
    found = _DONE.findall(log)
    if not found:
        return None
    total, ok, resumed, failed = (int(x) for x in found[-1])
    return total, ok + resumed, failed


def summary_line(job_id: str, total: int, done: int, failed: int) -> str:
    """Per-series results: how many series came through, and where the reasons are. Which
    series failed and why stays in manifest.json (series UIDs and geometry are data), which
    leaves only through the airlock."""
    line = f"{done} of {total} series preprocessed"
    if failed:
        verb = "was" if failed == 1 else "were"
        line += (
            f"; {failed} failed and {verb} skipped: manifest.json says which and why "
            f"(tre outputs {job_id}; tre egress request {job_id} manifest.json --why ...)"
        )
    return line
