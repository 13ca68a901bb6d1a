"""Review finding 17.6: the state folder is private, and so is what a job leaves in it."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tre.config import Settings
from tre.executors.local import LocalExecutor


def test_state_folders_are_0700(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    (settings.jobs_dir).chmod(0o755)  # loosened by hand: the next start tightens it again
    settings.ensure_dirs()
    for d in (settings.home, settings.keys_dir, settings.jobs_dir, settings.staging_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_job_log_and_outputs_are_private(tmp_path: Path) -> None:
    """Host-toolchain developer mode, enabled explicitly: the job is a Python one-liner."""
    sandbox = Sandbox(tmp_path, LocalExecutor(host_toolchain=True))
    run = sandbox.run("import os; os.mkdir('/output/d'); os.chmod('/output/d', 0o777); print('x')")
    assert run.result.state == "succeeded", run.log
    assert stat.S_IMODE(run.spec.log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(run.spec.output_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((run.spec.output_dir / "d").stat().st_mode) == 0o755  # never left 0777
