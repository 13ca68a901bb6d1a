"""A download's progress bar is for a terminal: piped, stdout holds only what the command says.

`tre audit export bundle.jsonl | ...` (and `tre job code -o`, `tre hub results`: every
download through `ApiClient.download`) printed an empty line before "wrote ..." whenever the
answer took longer than the bar's first refresh (a tenth of a second): the transient bar,
drawn on stdout though it was a pipe, left its line behind. `tre egress download` already
drew no bar when piped. A real `tre` process against a server that sends its answer in two
parts, 0.5 s apart, as a server planning a large bundle does."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

LINES = [b'{"format": "tre-audit-bundle/1"}\n', b'{"idx": 0}\n']


class _SlowExport(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(sum(map(len, LINES))))
        self.end_headers()
        for line in LINES:
            self.wfile.write(line)
            self.wfile.flush()
            time.sleep(0.5)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowExport)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_piped_download_prints_only_its_line(slow_server: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(TRE_HOME=str(tmp_path / "state"), TRE_API_URL=slow_server, TRE_TOKEN="a.b.c")
    out = tmp_path / "bundle.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "audit", "export", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == b"".join(LINES)
    # Round 21: with no key pinned here, the line names --key (plain verify trusts the bundle's
    # own key on first use).
    said = f"wrote {out} ({out.stat().st_size} bytes); check it with: tre audit verify {out} --key log.vkey ("
    assert proc.stdout.startswith(said) and proc.stdout.count("\n") == 1, proc.stdout
    assert proc.stderr == ""
