"""Copying a finished job's /output to the control-plane host.

Choice (documented in docs/deploy.md): a short-lived collector pod mounts the job's output
PVC **read-only** and sleeps; the executor execs ``python -m tre.executors.kubernetes.tarstream``
in it and reads the tar from the exec WebSocket's stdout channel. Exec, not the log API,
because kubelet log rotation (10 MiB by default) would silently cut large outputs and logs
are line-oriented text. The tar is spooled to disk and unpacked with `tarstream.extract`,
which refuses links, devices and path escapes.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.stream import stream

from tre.executors.kubernetes.tarstream import OutputTooLarge, extract

SPOOL_MEMORY_BYTES = 8 * 1024 * 1024


class CollectError(RuntimeError):
    """The outputs could not be copied out."""


def exec_tar(
    core: k8s_client.CoreV1Api,
    namespace: str,
    pod: str,
    dest: Path,
    limit_bytes: int,
    timeout_s: float,
    heartbeat: Callable[[], None] = lambda: None,
) -> list[Path]:
    """Run the packer in the collector pod and unpack its stdout into `dest`.

    `heartbeat` is called every couple of seconds: a large transfer must not look like a
    dead worker to the others.
    """
    command = [
        "python",
        "-m",
        "tre.executors.kubernetes.tarstream",
        "/output",
        "--limit-bytes",
        str(limit_bytes),
    ]
    ws: Any = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container="collector",
        command=command,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        binary=True,
        _preload_content=False,
        _request_timeout=timeout_s,
    )
    stderr = bytearray()
    received = 0
    # Tar framing adds headers and padding; allow for them on top of the content limit.
    wire_limit = limit_bytes + 64 * 1024 * 1024
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        try:
            last_beat = time.monotonic()
            while ws.is_open():
                ws.update(timeout=1)
                if time.monotonic() - last_beat >= 2:
                    heartbeat()
                    last_beat = time.monotonic()
                if ws.peek_stdout():
                    chunk = ws.read_stdout()
                    received += len(chunk)
                    if received > wire_limit:
                        raise CollectError(f"outputs exceed the limit of {limit_bytes} bytes")
                    spool.write(chunk)
                if ws.peek_stderr():
                    stderr += ws.read_stderr()[:4096]
            status = _exec_status(ws)
        finally:
            ws.close()
        if status is not None and status.get("status") != "Success":
            detail = stderr.decode(errors="replace").strip() or status.get("message", "")
            if "exceed the limit" in detail:
                raise CollectError(f"outputs exceed the limit of {limit_bytes} bytes")
            raise CollectError(f"collector failed: {detail or status}")
        spool.seek(0)
        try:
            return extract(spool, dest, limit_bytes)
        except OutputTooLarge as exc:
            raise CollectError(str(exc)) from exc


def _exec_status(ws: Any) -> dict[str, Any] | None:
    """The v1.Status the API server sends on the error channel (3) when the command ends."""
    raw = ws.read_channel(3)
    if not raw:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    status: dict[str, Any] = json.loads(raw)
    return status
