"""Long-running commands stop cleanly on SIGINT and SIGTERM, once or twice, with no traceback.

Before, `tre hub serve` and `tre serve` printed a traceback on the first Ctrl-C (uvicorn sends
the signals it caught again from inside its event loop, and the KeyboardInterrupt raised there
cancelled its lifespan task) and exited 0; a second Ctrl-C during a command's cleanup landed
in a thread join or the interpreter's exit. Real processes, real signals (sent to the process
group, as a terminal sends Ctrl-C), each sent only once the process said where it stands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

STARTED = {"serve": "tre serve: API on", "worker": "tre worker:", "hub": "tre hub serve: hub API on"}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(TRE_HOME=str(tmp_path / "home"), HOME=str(tmp_path))
    return env


class _Service:
    """A `tre` command in its own process group, its output read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tre.cli.main", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._seen = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._seen:
                lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, lines: list[str], text: str, timeout: float = 120) -> None:
        with self._seen:
            ok = self._seen.wait_for(
                lambda: any(text in line for line in lines) or self.proc.poll() is not None, timeout
            )
        assert ok and any(text in line for line in lines), (self.out, self.err)

    def signal(self, signum: int) -> None:
        os.killpg(self.proc.pid, signum)

    def end(self) -> tuple[int, str, str]:
        status = self.proc.wait(timeout=120)
        for reader in self._readers:
            reader.join(timeout=10)
        return status, "".join(self.out), "".join(self.err)


def _args(which: str) -> list[str]:
    port = str(free_port())
    return {
        "serve": ["serve", "--port", port],
        "worker": ["worker"],
        "hub": ["hub", "serve", "--port", port],
    }[which]


@pytest.fixture(autouse=True)
def _local_executor_possible() -> None:
    """`tre serve` and `tre worker` with the local executor start only as root, with bwrap."""
    if not Path("/usr/bin/bwrap").exists() or os.geteuid() != 0:
        pytest.skip("tre serve and tre worker with the local executor need root and bubblewrap")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("which", ["serve", "worker", "hub"])
def test_one_signal_stops_the_service_cleanly(tmp_path: Path, which: str, signum: int) -> None:
    service = _Service(_args(which), _env(tmp_path))
    service.wait_for(service.out, STARTED[which])
    service.signal(signum)
    status, out, err = service.end()
    assert status == 0, (out, err)
    assert "Traceback" not in out + err and "ERROR" not in err
    assert err.splitlines() == ["stopping (Ctrl-C again to stop at once)"], err
    assert out.splitlines()[-1].endswith(": stopped"), out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("which", ["serve", "worker", "hub"])
def test_a_second_signal_while_stopping_ends_at_once_in_one_line(
    tmp_path: Path, which: str, signum: int
) -> None:
    service = _Service(_args(which), _env(tmp_path))
    service.wait_for(service.out, STARTED[which])
    service.signal(signum)
    service.wait_for(service.err, "stopping")
    service.signal(signum)
    status, out, err = service.end()
    assert "Traceback" not in out + err and "ERROR" not in err
    lines = err.splitlines()
    if status == 0:  # the stop was already complete: the second signal is ignored
        assert lines == ["stopping (Ctrl-C again to stop at once)"], err
    else:
        assert status == 128 + signum, (out, err)
        assert lines == ["stopping (Ctrl-C again to stop at once)", "error: interrupted"], err


@pytest.mark.parametrize("which", ["serve", "hub"])
def test_many_signals_at_once_never_print_a_traceback(tmp_path: Path, which: str) -> None:
    """A held-down Ctrl-C: signals as fast as they can be sent, whatever they interrupt."""
    service = _Service(_args(which), _env(tmp_path))
    service.wait_for(service.out, STARTED[which])
    for _ in range(5):
        try:
            service.signal(signal.SIGINT)
        except ProcessLookupError:
            break
    status, out, err = service.end()
    assert status in (0, 130), (status, out, err)
    assert "Traceback" not in out + err and "ERROR" not in err
    assert set(err.splitlines()) <= {"stopping (Ctrl-C again to stop at once)", "error: interrupted"}, err


def test_a_signal_during_start_up_ends_with_one_line(tmp_path: Path) -> None:
    """Before the command runs (still importing): at once, the signal's exit status."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "tre.cli.main", *_args("serve")],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.rstrip().endswith("| typer"):  # importing: before the command started
            break
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    lines = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert lines == ["error: interrupted"], err


# Each signal once and each count once, not all four pairs: the supervisor and the agent take
# SIGINT and SIGTERM through one handler, and each case starts whole services (~10 s of CPU
# on CI's two cores).
SIGNAL_COUNTS = pytest.mark.parametrize(
    ("signum", "count"), [(signal.SIGINT, 1), (signal.SIGTERM, 2)], ids=["SIGINT-1", "SIGTERM-2"]
)


@SIGNAL_COUNTS
def test_several_api_processes_stop_without_a_traceback(tmp_path: Path, signum: int, count: int) -> None:
    """TRE_API_WORKERS=2: uvicorn's supervisor takes the signals and stops its children with
    SIGTERM. Before, each child also took the terminal's Ctrl-C and printed a traceback."""
    env = {**_env(tmp_path), "TRE_API_WORKERS": "2"}
    port = str(free_port())
    service = _Service(["serve", "--no-worker", "--port", port], env)
    service.wait_for(service.out, STARTED["serve"])
    deadline = time.monotonic() + 120  # the children answer once they imported the app
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=2)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, (service.out, service.err)
            time.sleep(0.2)
    for _ in range(count):
        service.signal(signum)
    status, out, err = service.end()
    assert status == 0, (out, err)
    assert "Traceback" not in out + err and "ERROR" not in err, err
    assert out.splitlines()[-1] == "tre serve: stopped", out


def _joined_node(tmp_path: Path) -> dict[str, str]:
    """A node joined to a hub that does not answer (the agent keeps retrying: still running)."""
    hub_env = {**_env(tmp_path / "hub")}
    said = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "hub", "key"],
        env=hub_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = said.stdout.split()[-1]
    node_env = _env(tmp_path / "node")
    hub_url = f"http://127.0.0.1:{free_port()}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tre.cli.main",
            "node",
            "join",
            "--name",
            "n1",
            "--hub",
            hub_url,
            "--hub-key",
            key,
        ],
        env=node_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return node_env


@SIGNAL_COUNTS
def test_the_node_agent_stops_cleanly(tmp_path: Path, signum: int, count: int) -> None:
    service = _Service(["node", "agent"], _joined_node(tmp_path))
    service.wait_for(service.out, "tre node agent: polling the hub")
    service.signal(signum)
    if count == 2:
        service.wait_for(service.err, "stopping")
        service.signal(signum)
    status, out, err = service.end()
    assert "Traceback" not in out + err, err
    assert status in ((0,) if count == 1 else (0, 128 + signum)), (out, err)
    if status == 0:
        assert out.splitlines()[-1] == "tre node agent: stopped", out
