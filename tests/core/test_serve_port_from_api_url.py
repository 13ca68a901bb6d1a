"""`tre serve` listens where the CLI will look: ``TRE_API_URL``'s port when that URL names this
machine (newcomer round 19: with ``TRE_API_URL=http://127.0.0.1:9000`` set for the CLI, `tre
serve` listened on 8765 and every command said the API could not be reached). An explicit
``--port`` wins; a URL of another host (a proxy) leaves the default. A real server process."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.core.test_service_signals import STARTED, _env, _Service
from tests.ports import free_port
from tre.cli.app import local_api_port


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://127.0.0.1:9000", "127.0.0.1", 9000),
        ("http://localhost:9001/", "127.0.0.1", 9001),
        ("http://[::1]:9002", "127.0.0.1", 9002),
        ("http://10.0.0.5:9003", "10.0.0.5", 9003),
        ("http://127.0.0.1", "127.0.0.1", None),  # no port named: the default
        ("https://127.0.0.1:9443", "127.0.0.1", None),  # TLS ends at a proxy, not here
        ("http://tre.example.org:8080", "127.0.0.1", None),  # another host
        ("http://127.0.0.1:9000", "10.0.0.5", None),  # listening elsewhere than the URL
        ("http://127.0.0.1:99999", "127.0.0.1", None),  # not a port
    ],
)
def test_the_port_serve_takes_from_the_api_url(url: str, host: str, port: int | None) -> None:
    assert local_api_port(url, host) == port


def test_serve_listens_on_the_api_urls_port_and_the_cli_reaches_it(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path)
    env["TRE_API_URL"] = f"http://127.0.0.1:{port}"
    service = _Service(["serve", "--no-worker"], env)
    try:
        service.wait_for(service.out, STARTED["serve"])
        assert f"http://127.0.0.1:{port} " in "".join(service.out), service.out
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=30).status_code == 200
    finally:
        if service.proc.poll() is None:
            service.signal(signal.SIGTERM)
    status, out, err = service.end()
    assert status == 0 and "Traceback" not in out + err, (out, err)
