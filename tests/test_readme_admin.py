"""A new admin follows the README's admin block, line by line, as typed into a shell.

The block (the ``bash`` block holding ``tre admin init``) is read from README.md and each line
run by bash, verbatim, with the venv's ``tre`` on the PATH, against a fresh state folder and
nothing set but where state, data and the API are (the README's table); ``tre serve`` is
started in its own process on a free port. ``/srv/tre`` (the data folder as root) is this
test's data folder, holding pydicom's DICOM files. Left out, and said why: ``tre login
--oidc`` (needs an OpenID provider), ``tre image import my-analysis.tar`` (a file the admin
brings), ``tre admin build-image`` (minutes; the demo and tests/images build it) and the
``image approve`` line whose ``<digest>`` placeholder names that import.

The block once seated DAC members (``tre admin dac assign lidc dana``) it never made: the
line failed with a bare "no user 'dana'"; and ``tre dataset add`` printed what it found as a
Python dict (round 19).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydicom.data import get_testdata_file

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]
TRE_BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap not installed")

# What this machine cannot do (see the module's docstring), by a piece of the line.
NOT_HERE = ("--oidc", "tre image import ", "tre admin build-image", "<digest>")


def admin_lines() -> list[str]:
    """The README's admin block: each command line (comments kept: bash drops them)."""
    text = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "tre admin init" in b)
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_admin_block_runs_as_written(tmp_path: Path) -> None:
    data = tmp_path / "srv-tre"
    (data / "lidc").mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(get_testdata_file(name), data / "lidc" / name)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(
        PATH=f"{TRE_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        HOME=str(tmp_path),
        TRE_HOME=str(tmp_path / "state"),
        TRE_DATA_DIR=str(data),
        TRE_API_URL=f"http://127.0.0.1:{port}",
    )
    lines = admin_lines()
    assert any(line.startswith("tre serve") for line in lines)
    server: subprocess.Popen[str] | None = None
    ran = []
    try:
        for line in lines:
            if any(part in line for part in NOT_HERE):
                continue
            if line.startswith("tre serve"):
                server = _serve(line, port, env, tmp_path)
                continue
            command = line.replace("/srv/tre/", f"{data}/")
            proc = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
            said = proc.stdout + proc.stderr
            assert "Traceback" not in said, (line, said)
            assert proc.returncode == 0, (line, said)
            ran.append(line)
            if line.startswith("tre dataset add"):
                # What registering found, in words (it was a Python dict), and the next step.
                assert "registered dataset lidc: 2 DICOM files (0 others), " in proc.stdout, proc.stdout
                assert "{" not in proc.stdout and "tre admin dac assign lidc USER" in proc.stdout, proc.stdout
        assert server is not None
        # The committee the block seated is there and can meet its quorum.
        listed = subprocess.run(
            ["tre", "admin", "dac", "list"], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert re.search(r"^lidc\t.*\tdana,dave\t.*\tyes$", listed.stdout, re.M), listed.stdout
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    assert any("dac assign" in line for line in ran) and any("doctor" in line for line in ran)


def _serve(line: str, port: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """The README's `tre serve` line on this test's port, once it answers."""
    argv = line.split("#", 1)[0].split()
    proc = subprocess.Popen(
        [*argv, "--port", str(port)],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{env['TRE_API_URL']}/openapi.json", timeout=2)
            return proc
        except httpx.HTTPError:
            assert proc.poll() is None, "tre serve stopped"
            assert time.monotonic() < deadline, "tre serve did not answer within 60 s"
            time.sleep(0.2)
