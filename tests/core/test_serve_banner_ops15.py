"""`tre serve` and `tre hub serve` say where the API answers only once it does.

Before, the banner ("tre serve: API on http://...") was printed before the app was built
(migrations, keys, ~4 CPU-seconds): a script that waited for the line and connected at once
was refused. Real processes; the first connection is made the moment the line is read, with
no retry, and must be answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

BANNER = {"serve": "tre serve: API on", "hub": "tre hub serve: hub API on"}


def _args(which: str, port: int) -> list[str]:
    if which == "serve":
        return ["serve", "--no-worker", "--port", str(port)]
    return ["hub", "serve", "--port", str(port)]


@pytest.mark.parametrize(
    ("which", "api_workers"),
    [("serve", 1), ("serve", 2), ("hub", 1)],
    ids=["serve", "serve-2-processes", "hub"],
)
def test_the_banner_comes_once_the_socket_listens(tmp_path: Path, which: str, api_workers: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(TRE_HOME=str(tmp_path / "home"), HOME=str(tmp_path), TRE_API_WORKERS=str(api_workers))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tre.cli.main", *_args(which, port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if BANNER[which] in line:
                break
        assert any(BANNER[which] in line for line in lines), (lines, proc.poll())
        assert sum(BANNER[which] in line for line in lines) == 1
        # At once, once: the line promised a listening socket.
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=60)
        assert 200 <= answer.status_code < 500, answer.text
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
