"""The README's first command: `tre demo` on a fresh state directory, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


def test_demo_runs_the_whole_flow(tmp_path):
    home = tmp_path / "home"
    # The demo job has no image root file system until the job image (issue 9, images
    # branch) is built, so the host-toolchain developer mode is enabled explicitly here.
    env = {**os.environ, "TRE_HOME": str(home), "COLUMNS": "200", "TRE_SANDBOX_HOST_TOOLCHAIN": "1"}
    env.pop("TRE_DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "network: unreachable as expected" in out
    assert "request approved" in out and "sha256 matches" in out and "DIFFERS" not in out
    assert "verified it offline: OK" in out
    released = list((home / "demo-release").glob("*/disclosure.json"))
    assert len(released) == 1
    record = json.loads(released[0].read_text())
    assert {f["path"] for f in record["files"]} == {"summary.csv", "montage.png"}
