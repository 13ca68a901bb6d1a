"""Two `tre serve` started at the same moment on one state directory (an operator's second
unit, a restart overlapping the old process): both start (the migration and first-start key
making race each other safely), both answer, and each stops on SIGTERM in one line, no
traceback; a second one on a port in use refuses in one line. Real processes."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx

from tests.core.test_service_signals import STARTED, _env, _local_executor_possible, _Service  # noqa: F401
from tests.ports import free_port


def _answers(port: int, service: _Service) -> bool:
    """Whether it answers within 3 minutes (a loaded 2-core CI starts a server in a minute or
    more: ~4 CPU-seconds each); False at once if its process has ended."""
    for _ in range(360):
        if service.proc.poll() is not None:
            return False
        try:
            if httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        threading.Event().wait(0.5)
    return False


def test_two_servers_on_one_state_start_answer_and_stop_cleanly(tmp_path: Path) -> None:
    env = _env(tmp_path)
    ports = [free_port(), free_port()]
    services = [_Service(["serve", "--port", str(p)], env) for p in ports]
    try:
        for s in services:
            s.wait_for(s.out, STARTED["serve"])
        for port, s in zip(ports, services, strict=True):  # the banner comes before uvicorn listens
            assert _answers(port, s), (port, s.proc.poll(), s.out, s.err)
        # A third on a port the first holds: one line, non-zero, nothing started.
        third = _Service(["serve", "--port", str(ports[0])], env)
        status, out, err = third.end()
        assert status != 0 and "Traceback" not in out + err
        assert len(err.strip().splitlines()) == 1 and "already in use" in err, err
    finally:
        for s in services:
            if s.proc.poll() is None:
                s.signal(signal.SIGTERM)
    for s in services:
        status, out, err = s.end()
        assert status == 0, (out, err)
        assert "Traceback" not in out + err and "ERROR" not in err, err
