"""`tre demo` by a user who is not root (the README says to prefix it with sudo): one line
saying so, at once, instead of mmdebstrap's "unable to pick chroot mode automatically" minutes
into building the job image, or the sandbox's refusal after that."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the CLI as another user")
def test_the_demo_without_root_says_to_use_sudo(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)  # noqa: S103 - the unprivileged user's home for this test
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO), TRE_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        + [sys.executable, "-m", "tre.cli.main", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "only root can start" in lines[0] and "sudo .venv/bin/tre demo" in lines[0]
    assert not (tmp_path / ".tre").exists()  # nothing was set up before refusing
