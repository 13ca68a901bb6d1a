"""The offline verifier must run with only the standard library and ``cryptography``.

A subprocess installs an import hook that refuses every top-level module outside the
standard library and ``cryptography`` (and its cffi backend), then imports the verifier and
verifies a real bundle with it. Any stray import (sqlalchemy, pydantic, typer...) fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine

from tests.audit.conftest import export_bytes
from tre.audit import record_event
from tre.audit.signing import AuditSigner, configure
from tre.config import Settings
from tre.store.db import session_scope

REPO = Path(__file__).resolve().parents[2]

GUARD = r"""
import sys
ALLOWED = set(sys.stdlib_module_names) | {"cryptography", "_cffi_backend", "cffi", "tre"}
ALLOWED_TRE = {"tre", "tre.audit", "tre.audit.verify", "tre.audit.merkle", "tre.audit.note"}

class Guard:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in ALLOWED or (name.startswith("tre") and name not in ALLOWED_TRE):
            raise ImportError(f"verifier must not import {name}")
        return None

sys.meta_path.insert(0, Guard())
from tre.audit.verify import main
sys.exit(main(sys.argv[1:]))
"""


def test_verifier_runs_with_stdlib_and_cryptography_only(
    engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path
) -> None:
    configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        for i in range(5):
            record_event(s, actor="alice", action="dataset.read", dataset_id=f"d{i}")
    bundle = tmp_path / "b.jsonl"
    bundle.write_bytes(export_bytes(engine, signer))
    # -I: isolated mode, no PYTHONPATH or user site; the repo is put on sys.path explicitly.
    code = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + GUARD
    cmd = [sys.executable, "-I", "-c", code, str(bundle), "--key", signer.verifier_key.encode()]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "OK: 5 entries verified" in ok.stdout

    lines = bundle.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"d2", b"d9")
    bundle.write_bytes(b"\n".join(lines))
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "first bad index 2" in bad.stdout, bad.stdout + bad.stderr


def test_guard_really_blocks_third_party_imports() -> None:
    """The guard itself must bite, or the test above proves nothing."""
    code = GUARD.split("from tre.audit.verify")[0] + "import sqlalchemy\n"
    res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "must not import sqlalchemy" in res.stderr
