"""`tre login` must leave the saved token readable by its owner only.

Before the fix the 0600 mode was applied only when the file was created: logging in again
over a credentials file that was world-readable (restored from a backup, created by an older
version, copied with a permissive umask) wrote the new bearer token into it as it was.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from tre.cli.client import CliError, credentials_path, save_credentials
from tre.config import reset_settings_cache


def test_existing_world_readable_credentials_file_is_tightened(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRE_HOME", str(tmp_path / "home"))
    reset_settings_cache()
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    os.chmod(path, 0o644)
    save_credentials("http://127.0.0.1:8765", "secret-token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["token"] == "secret-token"
    reset_settings_cache()


def test_credentials_symlink_is_not_followed(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRE_HOME", str(tmp_path / "home"))
    reset_settings_cache()
    path = credentials_path()
    path.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("{}")
    os.chmod(elsewhere, 0o644)
    path.symlink_to(elsewhere)
    with pytest.raises(CliError):
        save_credentials("http://127.0.0.1:8765", "secret-token")
    assert elsewhere.read_text() == "{}"
    reset_settings_cache()
