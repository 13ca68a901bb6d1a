"""Server processes move their start-up objects out of the garbage collector's full passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import gc
from tre.server import worker_process_app
before = gc.get_freeze_count()
worker_process_app()
print(before, gc.get_freeze_count())
"""


def test_an_api_worker_process_freezes_its_start_up_objects(tmp_path: Path) -> None:
    """Without this a full collection walked every module, mapper and route: 200 ms pauses
    of the whole process under load (docs/api-load.md)."""
    env = {**os.environ, "TRE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    env.pop("TRE_DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "admin", "init"], env=env, check=True, capture_output=True
    )
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert before == 0
    assert after > 50_000  # the app's whole object graph, not a handful
