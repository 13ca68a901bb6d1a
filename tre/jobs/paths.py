"""Where a job's files live on the control-plane host (outputs, log)."""

from __future__ import annotations

from pathlib import Path

from tre.config import Settings


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def output_dir(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "output"


def log_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "job.log"
