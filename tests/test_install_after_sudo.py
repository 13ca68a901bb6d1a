"""`./scripts/install` (and so `./scripts/test`) run by a normal user in a checkout that was
installed with `sudo ./scripts/install`, as the README tells a non-root user to.

That install leaves root's `.venv`, `.tools` and `tre.egg-info` in the user's checkout; the
user's `./scripts/test` then failed deep inside pip with a page of output ("Cannot update
time stamp of directory 'tre.egg-info'"). The install now says in one line, before it changes
anything, whose the folder is and what to do. Run as a real other user (`nobody`, through
`setpriv`) on a copy of the scripts, with a root-owned `.venv`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to run a script as another user"
)


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A checkout another user may enter (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="tre-sudo-install-"))
    try:
        root.chmod(0o755)
        shutil.copytree(REPO / "scripts", root / "scripts")
        shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
        yield root
    finally:
        shutil.rmtree(root)


def _as_nobody(checkout: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "bash", script],
        cwd=checkout,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("left_by_sudo", [".venv", "tre.egg-info", ".tools"])
def test_install_by_another_user_after_sudo_is_one_line(checkout: Path, left_by_sudo: str) -> None:
    (checkout / left_by_sudo).mkdir()  # root's, as `sudo ./scripts/install` leaves it
    (checkout / left_by_sudo / "keep").write_text("root's")
    proc = _as_nobody(checkout, "scripts/install")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{checkout}/{left_by_sudo} belongs to root" in lines[0], lines[0]
    assert "sudo ./scripts/test" in lines[0] and "sudo rm -rf" in lines[0], lines[0]
    assert (checkout / left_by_sudo / "keep").read_text() == "root's"  # nothing touched


def test_the_check_lets_the_owner_through(checkout: Path) -> None:
    """The same folder, owned by the user who runs the install, is no reason to stop: the
    install goes on to the system packages and the virtualenv (here a Python that fails at
    once, so that nothing is installed)."""
    (checkout / ".venv").mkdir()
    os.chown(checkout / ".venv", 65534, 65534)
    proc = _as_nobody(checkout, "scripts/install", PYTHON="/bin/false")
    assert proc.returncode != 0
    assert "belongs to" not in proc.stderr, proc.stderr
    assert "install-system-deps: ok" in proc.stdout, (proc.stdout, proc.stderr)
