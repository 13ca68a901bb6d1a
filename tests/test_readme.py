"""The README's two commands, taken from the README itself and run exactly as written.

A newcomer on a fresh Debian machine types them as root with no ``TRE_*`` variables set, so
the state goes to the default location. This test does the same: the commands are read from
the README's first code block and run verbatim with every ``TRE_*`` variable removed. To keep
the test from touching a real installation, the default folders (``/var/lib/tre`` and
``/srv/tre`` for root; the home folder for anyone else) are bind-mounted from temporary
folders inside a private mount namespace: the paths the program sees are the defaults.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tre.config import SYSTEM_DATA_DIR, SYSTEM_HOME

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


def readme_commands() -> list[str]:
    """The commands of the README's first ``bash`` block, comments removed."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no bash code block"
    commands = []
    for line in block.group(1).splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            commands.append(command)
    return commands


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(COLUMNS="200", **extra)
    return env


def test_readme_has_the_two_commands_and_ci_runs_the_second() -> None:
    install_and_demo, run_tests = readme_commands()
    assert "tre demo" in install_and_demo
    assert run_tests == "./scripts/test"
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()


# A fresh host builds the CPU job image first (Debian packages through apt, minutes); later
# runs import it from the host's cache.
@pytest.mark.timeout(3600)
def test_readme_first_command_verbatim_with_the_default_state(tmp_path: Path) -> None:
    command = readme_commands()[0]
    state, data = tmp_path / "state", tmp_path / "data"
    state.mkdir()
    data.mkdir()
    if os.geteuid() == 0:
        for place in (SYSTEM_HOME, SYSTEM_DATA_DIR):
            place.mkdir(parents=True, exist_ok=True)  # a mount point; the namespace hides it
        script = (
            f"mount --bind {shlex.quote(str(state))} {SYSTEM_HOME} && "
            f"mount --bind {shlex.quote(str(data))} {SYSTEM_DATA_DIR} && "
            f"cd {shlex.quote(str(REPO))} && {command}"
        )
        argv = ["unshare", "--mount", "--propagation", "private", "bash", "-c", script]
        env = clean_env()
        home, data_dir = state, data
    else:  # an ordinary user: the defaults are ~/.tre and ~/tre-data under a fresh home
        argv = ["bash", "-c", command]
        env = clean_env(HOME=str(tmp_path))
        home, data_dir = tmp_path / ".tre", tmp_path / "tre-data"
    proc = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "network: unreachable as expected" in out
    assert "request approved" in out and "sha256 matches" in out and "DIFFERS" not in out
    assert "verified it offline: OK" in out
    # The platform's cohort job ran in the platform's image on the sample dataset.
    cohort = re.search(r"(\d+) of (\d+) series preprocessed", out)
    assert cohort and int(cohort.group(1)) >= 1, out[-3000:]
    # The state went to the default place, the sample data beside it, not inside it.
    assert (home / "tre.db").is_file()
    assert any((data_dir / "demo").rglob("*.dcm"))
    released = list((home / "demo-release").glob("*/disclosure.json"))
    assert len(released) == 1
    record = json.loads(released[0].read_text())
    assert {f["path"] for f in record["files"]} == {"summary.csv", "montage.png"}
