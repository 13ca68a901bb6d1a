"""`tre submit --code .` never packs tre's own state: the saved login travelled with the code.

Found following README as a researcher whose state folder (TRE_HOME; by default `~/.tre`, so
any `--code ~`) lay inside the code folder: `tre job code JOB --list` showed
`home/credentials.json`, the researcher's bearer token, stored in the code store for
reviewers, auditors and the job itself to read.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tre.cli.code import _own_state
from tre.code.archive import CodeLimits, pack_folder
from tre.config import reset_settings_cache


def names(folder: Path, leave_out: list[Path]) -> list[str]:
    out = io.BytesIO()
    pack_folder(folder, out, CodeLimits(), leave_out=leave_out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as tar:
        return sorted(tar.getnames())


def test_the_state_folder_inside_the_code_folder_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = tmp_path / "project"
    (code / "lib").mkdir(parents=True)
    (code / "analysis.py").write_text("print('hi')\n")
    (code / "lib" / "util.py").write_text("")
    state = code / ".tre"  # as ~/.tre is inside ~
    state.mkdir()
    (state / "credentials.json").write_text('{"token": "secret"}')
    monkeypatch.setenv("TRE_HOME", str(state))
    monkeypatch.setenv("TRE_CACHE_DIR", str(tmp_path / "cache"))
    reset_settings_cache()
    try:
        assert names(code, []) == [
            ".tre",
            ".tre/credentials.json",
            "analysis.py",
            "lib",
            "lib/util.py",
        ]  # before
        skipped = _own_state(code)
        assert skipped == [state.resolve()]
        assert "left out" in capsys.readouterr().err
        assert names(code, skipped) == ["analysis.py", "lib", "lib/util.py"]
        # The state folder itself given as the code: its login and keys are still left out.
        (state / "notes.txt").write_text("")
        assert names(state, _own_state(state)) == ["notes.txt"]
        # A code folder inside the state folder (the demo's) holds none of them.
        (state / "demo-code").mkdir()
        capsys.readouterr()
        assert _own_state(state / "demo-code") == [] and capsys.readouterr().err == ""
        # Elsewhere nothing is left out and nothing is said.
        other = tmp_path / "other"
        other.mkdir()
        assert _own_state(other) == [] and capsys.readouterr().err == ""
    finally:
        reset_settings_cache()
