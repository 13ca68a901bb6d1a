"""`tre preprocess` builds its job from the project's quota, not from fixed limits."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from tre.api.schemas import ProjectOut
from tre.cli.preprocess import job_command, job_request
from tre.jobs.lineage import input_mount_path
from tre.kernels.job import _parser


def project(**quota: object) -> dict[str, object]:
    fields = {
        "id": "lung",
        "name": "Lung",
        "description": "",
        "max_cpu": 8.0,
        "max_memory_mb": 24_000,
        "max_gpu": 0,
        "max_time_s": 36_000,
        "max_output_mb": 200_000,
        "max_concurrent_jobs": 2,
        "max_code_mb": 50,
        "max_code_files": 10_000,
        "members": ["alice"],
        **quota,
    }
    known = {k: v for k, v in fields.items() if k in ProjectOut.model_fields}
    return ProjectOut(**known).model_dump()  # the exact shape GET /api/v1/projects/ID returns


def test_limits_default_to_the_project_quota() -> None:
    cmd = job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu", "zarr", 8)
    body = job_request(project(), "lidc", cmd, image="img@sha256:" + "0" * 64, gpu=False)
    assert body["memory_mb"] == 24_000 and body["cpu"] == 8.0
    assert body["time_limit_s"] == 36_000 and body["output_limit_mb"] == 200_000
    assert body["project_id"] == "lung" and body["dataset_ids"] == ["lidc"] and body["gpu"] == 0
    # The command is one the job's own parser accepts.
    args = _parser().parse_args(cmd[3:])
    assert args.format == "zarr" and args.spacing == [1.0, 1.0, 1.0] and args.workers == 8


def test_lower_limits_are_kept_higher_ones_refused() -> None:
    cmd = job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu")
    body = job_request(project(), "d", cmd, image="i", gpu=False, memory_mb=2048, time_limit=60)
    assert body["memory_mb"] == 2048 and body["time_limit_s"] == 60
    with pytest.raises(typer.BadParameter, match="at most 24000"):
        job_request(project(), "d", cmd, image="i", gpu=False, memory_mb=50_000)
    with pytest.raises(typer.BadParameter, match="no GPU"):
        job_request(project(), "d", cmd, image="i", gpu=True)


def test_workers_default_to_the_cgroup_quota_not_the_host() -> None:
    from tre.kernels.cohort import DEFAULT_MAX_WORKERS, _cgroup_cpu_quota, available_cpus

    quota = _cgroup_cpu_quota()
    n = available_cpus()
    assert 1 <= n <= DEFAULT_MAX_WORKERS if quota is None else 1 <= n <= max(1, int(quota) + 1)


def test_cli_usage_error_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "preprocess", "-d", "x", "-p", "y", "--format", "tiff"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nii.gz, nii, zarr" in lines[0]


def test_per_series_results_are_read_from_the_jobs_own_last_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Item 10: the cohort job (run here as in the sandbox) skips a bad series, and what the
    researcher is told comes from its screened log's fixed-format last line, with where the
    per-series reasons are (manifest.json, through the airlock), never a series UID."""
    from tests.kernels.test_cohort import argv, make_cohort
    from tre.cli.preprocess import series_summary, summary_line
    from tre.kernels.job import run

    make_cohort(tmp_path / "in", n_good=2, bad=True)
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    log = capsys.readouterr().out
    assert series_summary(log) == (3, 2, 1)
    line = summary_line("j1", 3, 2, 1)
    assert line.startswith("2 of 3 series preprocessed; 1 failed and was skipped") and "manifest.json" in line
    assert "2 failed and were skipped" in summary_line("j1", 3, 1, 2)
    assert "1.2.826" not in line
    assert series_summary("progress 0/3\n") is None  # killed before the end: nothing claimed


def test_success_ends_with_the_command_that_trains_on_the_outputs() -> None:
    """The printed command is a `tre submit` the CLI accepts: this job as --input-job, the
    project, dataset and image of the preprocessing job (docs/job-inputs.md)."""
    import shlex

    from typer.main import get_command

    from tre.cli.app import app
    from tre.cli.preprocess import train_hint

    image = "registry.tre.local/tre-job-cpu@sha256:" + "ab" * 32
    hint = train_hint("lung study", "lidc", "f" * 32, image)
    first, command = hint.splitlines()
    assert first.startswith(f"train on the outputs (read-only at /inputs/{'f' * 32}; ")
    assert "manifest.json maps each series" in first
    argv = shlex.split(command)
    assert argv[:2] == ["tre", "submit"]
    submit = get_command(app).get_command(None, "submit")  # type: ignore[attr-defined]
    params = submit.make_context("submit", argv[2:]).params
    assert params["project"] == "lung study" and params["dataset"] == ["lidc"]
    assert params["input_job"] == ["f" * 32] and params["image"] == image
    assert params["command"] == ["python3", "train.py"] and str(params["code"]) == "."


def test_files_past_the_policy_limit_are_explained_in_one_line() -> None:
    """The worker's reason when a cohort wrote more files than the policy records: the CLI
    says what it means (still readable by a later job; who can raise the limit)."""
    from tre.cli.preprocess import unrecorded_hint

    reason = (
        "exit 0; some output files were not recorded and cannot be released (names with control "
        "characters, ..., nested too deep, or too many files)"
    )
    hint = unrecorded_hint(reason)
    assert hint is not None and "\n" not in hint
    assert hint.startswith("output files past") and "--input-job" in hint and "job.max_output_files" in hint
    assert unrecorded_hint("exit 0") is None


def test_a_resumed_cohort_reads_the_ended_job_where_input_jobs_are() -> None:
    """`tre preprocess --resume JOB`: the job copies JOB's finished series from where the
    platform mounts an input job's outputs (tre.jobs.lineage), and without it the command
    is as before."""
    plain = job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu")
    resumed = job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu", resume_from="a" * 32)
    assert "--resume-from" not in plain
    assert resumed == [*plain, "--resume-from", input_mount_path("a" * 32)]
