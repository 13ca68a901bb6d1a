"""`tre serve` on a state directory it cannot use says so in one line, and only that.

It printed "tre serve: API on http://127.0.0.1:8765 ...; Ctrl-C stops it" first and then
failed: a newcomer (a sudo user whose `tre serve` ran without sudo, on root's /var/lib/tre)
read that the API was up. The state directory is now made usable before the banner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.ports import free_port


def test_serve_on_an_unusable_state_dir_is_one_line_and_no_banner(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # refused to root as well as to anyone else
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env["TRE_HOME"] = str(blocker / "state")
    proc = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "API on" not in proc.stdout, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot use "), proc.stderr
    assert str(blocker) in lines[0]
