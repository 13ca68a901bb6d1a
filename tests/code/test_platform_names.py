"""A code archive that carries the platform's own module names (``tre/``), interpreter hooks
(``sitecustomize.py``, ``usercustomize.py``, a ``.pth`` file) and a ``.git`` folder with a
hook is accepted as code (they are ordinary files, and only the job imports them, inside its
sandbox), but nothing of the platform outside the sandbox runs them: the Kubernetes init
container's exact command, run with the hostile tree as its working directory, unpacks it
without importing a line of it. The same command without ``-I`` is hijacked (the control).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.code.hostile import file, folder, targz
from tests.k8s.test_manifests import SETTINGS
from tre.code.archive import CodeLimits
from tre.code.store import CodeStore
from tre.config import Settings
from tre.executors.kubernetes import manifests as m
from tre.executors.kubernetes.manifests import CODE_ARCHIVE_MOUNT, CODE_MOUNT


def _hostile(marker: Path) -> bytes:
    hook = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n".encode()
    return targz(
        folder("tre"),
        file("tre/__init__.py", hook),
        folder("tre/code"),
        file("tre/code/__init__.py", hook),
        file("tre/code/fetch.py", hook),
        file("sitecustomize.py", hook),
        file("usercustomize.py", hook),
        file("zz-hijack.pth", b"import os; " + hook),
        folder(".git"),
        folder(".git/hooks"),
        file(".git/hooks/post-checkout", b"#!/bin/sh\ntouch " + str(marker).encode() + b"\n"),
        file("analysis.py", b"print('the job')\n"),
    )


def _fetch_command(sha: str, archive: Path, into: Path) -> list[str]:
    init = m.code_init(sha, SETTINGS)[0]  # the init container, exactly as the pod gets it
    command = [str(c) for c in init["command"]]
    assert command[0] == "python3"
    command[0] = sys.executable
    return [
        str(archive) if c == CODE_ARCHIVE_MOUNT else str(into) if c == f"{CODE_MOUNT}/tree" else c
        for c in command
    ]


def test_platform_module_names_in_code_never_run_outside_the_sandbox(
    settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "hijacked"
    data = _hostile(marker)
    sha = hashlib.sha256(data).hexdigest()
    store = CodeStore(settings)
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(data)
    stored = store.store_file(archive, CodeLimits())
    tree = store.tree_path(stored.sha256)
    assert (tree / "tre" / "code" / "fetch.py").is_file() and (tree / "zz-hijack.pth").is_file()
    assert not marker.exists()  # storing and unpacking imported nothing

    (tmp_path / "pod-code").mkdir()  # the emptyDir the pod mounts at /code
    command = _fetch_command(sha, archive, tmp_path / "pod-code" / "tree")
    assert command[1] == "-I"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "PYTHONSTARTUP": str(tree / "sitecustomize.py")}
    run = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "pod-code" / "tree" / "analysis.py").is_file()
    assert not marker.exists(), marker.read_text()

    # The control: without -I, the working directory's `tre` is the one imported.
    hijackable = [c for c in command if c != "-I"]
    subprocess.run(hijackable, cwd=tree, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert marker.is_file() and "tre" in marker.read_text()
