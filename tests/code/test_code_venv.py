"""A researcher's project folder with its virtual environment inside (review round 12).

Before: ``tre submit`` in a folder holding ``.venv`` was refused outright (``symbolic
link '.venv/bin/python3' points to an absolute path``), with no hint of what to do; the
venv's interpreter is the laptop's and its packages were built for the laptop, so it could
not have run in the job's image anyway. Now the CLI leaves virtual environments out and
names each on stderr; an archive made by hand with such a link is still refused, saying what
to do."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.code.hostile import link, targz
from tre.cli.code import _venvs
from tre.code.archive import CodeLimits, CodeRefused, inspect_archive, pack_folder, virtual_environments

LIMITS = CodeLimits(max_bytes=1 << 30, max_entries=100_000)


def _project(tmp_path: Path) -> Path:
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "main.py").write_text("print('hi')\n")
    (src / "pkg" / "__init__.py").write_text("")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(src / ".venv")], check=True)
    (src / "tools" / "env" / "conda-meta").mkdir(parents=True)
    (src / "tools" / "env" / "bin").mkdir()
    (src / "tools" / "env" / "bin" / "python").symlink_to("/usr/bin/python3")
    return src


def test_a_folder_with_a_venv_packs_without_it_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _project(tmp_path)
    with pytest.raises(
        CodeRefused, match=r"'\.venv/bin/python[0-9.]*' points to an absolute path.*make it relative"
    ):
        pack_folder(src, io.BytesIO(), LIMITS)
    assert virtual_environments(src.resolve()) == [
        (src / ".venv").resolve(),
        (src / "tools" / "env").resolve(),
    ]
    out = io.BytesIO()
    manifest = pack_folder(src, out, LIMITS, leave_out=_venvs(src))
    names = {e.path for e in manifest.entries}
    assert {"main.py", "pkg/__init__.py"} <= names
    assert not any(n.startswith((".venv", "tools/env")) for n in names), names
    err = capsys.readouterr().err
    assert "left out" in err and ".venv" in err and "virtual environment" in err
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:gz") as tar:
        assert not any(".venv" in m.name for m in tar.getmembers())


def test_a_hand_made_archive_with_an_absolute_link_says_what_to_do() -> None:
    with pytest.raises(CodeRefused) as info:
        inspect_archive(io.BytesIO(targz(link(".venv/bin/python", "/usr/bin/python3"))), LIMITS)
    assert "points to an absolute path" in str(info.value) and "make it relative" in str(info.value)


def test_a_folder_nested_past_the_depth_bound_is_refused_with_its_reason(tmp_path: Path) -> None:
    """Redteam round 14: `tre submit --code DIR` looked for virtual environments first, with a
    walker that recursed once per level, so a folder of 1,500 nested folders ended in
    "unexpected RecursionError ... (a bug in tre ...)" instead of the packer's reason."""
    folder = tmp_path / "proj"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):  # one level at a time: Path.mkdir(parents=True) recurses too
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(os.open("x.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    try:
        leave_out = _venvs(folder)  # what the CLI runs before packing
        with pytest.raises(CodeRefused, match="nested deeper than"):
            pack_folder(folder, io.BytesIO(), LIMITS, leave_out=leave_out)
        assert virtual_environments(folder) == []
    finally:
        # pytest's later clean-up of old temporary folders (shutil.rmtree: a frame per level)
        # ended a later session with RecursionError on this tree; rm(1) does not recurse so.
        subprocess.run(["rm", "-rf", "--", str(folder)], check=True)
