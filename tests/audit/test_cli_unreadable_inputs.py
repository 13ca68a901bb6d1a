"""A file an auditor names that is not text, or cannot be read, is one line saying so.

`tre audit verify BUNDLE --key FILE` with a binary FILE (a bundle given in the key's place, a
key saved in another encoding) ended as "unexpected UnicodeDecodeError ... (a bug in tre ...)";
so did a binary --policy file and a pinned key in $TRE_HOME/audit/ that is not text. Each
text file the audit commands read goes through one reader that names the file and what it
was meant to be.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BINARY = bytes(range(256)) * 4  # not UTF-8


def _verify(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(TRE_HOME=str(tmp_path / "state"), TRE_API_URL="http://127.0.0.1:9")
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "audit", "verify", str(tmp_path / "bundle.jsonl"), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("where", ["--key", "--policy", "pinned"])
def test_a_binary_file_in_a_text_files_place_is_one_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "bundle.jsonl").write_bytes(b'{"vkey": "x"}\n')
    blob = tmp_path / "blob.bin"
    blob.write_bytes(BINARY)
    extra: list[str] = []
    if where == "pinned":
        pinned = tmp_path / "state" / "audit" / "log.vkey"
        pinned.parent.mkdir(parents=True)
        pinned.write_bytes(BINARY)
        blob = pinned
    else:
        extra = [where, str(blob)]
    proc = _verify(tmp_path, *extra)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and f"{blob} is not UTF-8 text" in lines[0], lines[0]
    assert "unexpected" not in lines[0] and "Traceback" not in proc.stderr


def test_an_unreadable_key_file_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000")
    (tmp_path / "bundle.jsonl").write_bytes(b'{"vkey": "x"}\n')
    key = tmp_path / "log.vkey"
    key.write_text("k")
    key.chmod(0)
    proc = _verify(tmp_path, "--key", str(key))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"error: cannot read verifier key {key}: Permission denied"]
