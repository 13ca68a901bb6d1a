"""Copying a finished job's /output to the control-plane host.

A short-lived collector pod mounts the job's output PVC **read-only** and sleeps; the
executor execs the packer in it and reads the tar from the exec WebSocket's stdout channel.
Exec, not the log API, because kubelet log rotation (10 MiB by default) would cut large
outputs and logs are line-oriented text.

The collector never runs anything the job wrote: the packer's source (`packer.py`,
standard library only) travels in the exec command and runs as ``python3 -I -S -c``
(isolated: no PYTHON* variables, no user site, neither the working directory nor a script
directory on ``sys.path``; no ``site``), with ``workingDir: /`` and ``PYTHONSAFEPATH=1``
in the pod as a second fence, in a minimal Python image that has no ``tre`` package.

Frames are read one at a time from the socket and written straight to a spool file on
disk (`staging.OutputStaging`), so memory stays bounded whatever the output size; stderr
and the exec status are capped. The exit status on the error channel is required: a
connection that ends without it means the tar may be cut, and the outputs are refused.
Error messages are fixed vocabulary (exit codes, limits), never text from the pod.
"""

from __future__ import annotations

import json
import logging
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from websocket import ABNF, WebSocketException

from tre.executors.kubernetes.packer import EXIT_TOO_LARGE, EXIT_TOO_MANY, MAX_ENTRIES, MAX_PATH_BYTES
from tre.executors.kubernetes.staging import OutputStaging
from tre.executors.kubernetes.tarstream import OutputTooComplex, OutputTooLarge, TruncatedArchive, extract
from tre.safetar import tarfile

log = logging.getLogger(__name__)

PACKER_SOURCE = (Path(__file__).parent / "packer.py").read_text(encoding="utf-8")
STDOUT, STDERR, STATUS = 1, 2, 3
STDERR_CAP = 4096
STATUS_CAP = 64 * 1024
# Tar framing on top of the content limit: per entry a header block, a PAX record for a
# long path (<= MAX_PATH_BYTES + its own header) and padding, plus end blocks and slack.
FRAMING_ALLOWANCE = 64 * 1024 * 1024 + MAX_ENTRIES * (4 * 512 + MAX_PATH_BYTES)


class CollectError(RuntimeError):
    """The outputs could not be copied out; the message is fixed vocabulary, safe to show."""


def packer_command(limit_bytes: int) -> list[str]:
    """The exec command: the packer's own source, run isolated by the image's interpreter."""
    return ["python3", "-I", "-S", "-c", PACKER_SOURCE, "/output", "--limit-bytes", str(limit_bytes)]


def _readable(ws: Any, timeout: float) -> bool:
    raw = ws.sock.sock
    if raw is None:
        return True  # closed: the next read raises, which ends the loop
    if hasattr(raw, "pending") and raw.pending():
        return True  # TLS bytes already decrypted and buffered
    ready, _, _ = select.select([raw], [], [], timeout)
    return bool(ready)


def exec_to_file(
    core: k8s_client.CoreV1Api,
    namespace: str,
    pod: str,
    command: list[str],
    dest: Path,
    wire_limit: int,
    timeout_s: float,
    heartbeat: Callable[[], None] = lambda: None,
) -> int:
    """Run `command` in the collector container, stdout to `dest`; returns its exit code.

    Raises `CollectError` if stdout exceeds `wire_limit`, the time runs out, or the
    connection ends without the API server's exit status.
    """
    try:
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
    except ApiException as exc:
        log.warning("exec into %s/%s failed: %s", namespace, pod, exc)
        raise CollectError(f"cannot exec into the collector ({exc.status})") from exc
    stderr = bytearray()
    status = bytearray()
    received = 0
    deadline = time.monotonic() + timeout_s
    last_beat = time.monotonic()
    try:
        with dest.open("wb") as fh:
            while True:
                now = time.monotonic()
                if now > deadline:
                    raise CollectError(f"the collector did not finish within {int(timeout_s)} s")
                if now - last_beat >= 2:
                    heartbeat()
                    last_beat = now
                if not _readable(ws, 1.0):
                    continue
                # One frame at a time straight to disk: the client's own update() would
                # buffer every frame already on the socket, and capture_all keeps it all.
                opcode, frame = ws.sock.recv_data_frame(True)
                if opcode == ABNF.OPCODE_CLOSE:
                    break
                if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not frame.data:
                    continue
                data: bytes = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
                channel, payload = data[0], data[1:]
                if channel == STDOUT:
                    received += len(payload)
                    if received > wire_limit:
                        raise CollectError("outputs exceed the limit")
                    fh.write(payload)
                elif channel == STDERR:
                    stderr += payload[: max(0, STDERR_CAP - len(stderr))]
                elif channel == STATUS:
                    status += payload[: max(0, STATUS_CAP - len(status))]
    except (WebSocketException, OSError) as exc:
        if not status:
            raise CollectError("the connection to the collector dropped before it finished") from exc
    finally:
        ws.close()
    if stderr:
        log.info("collector %s/%s stderr: %r", namespace, pod, bytes(stderr))
    return _exit_code(bytes(status))


def _exit_code(raw: bytes) -> int:
    """The exit code from the v1.Status on the error channel; missing or odd means failure."""
    if not raw:
        raise CollectError("the collector's exit status never arrived (connection cut): outputs refused")
    try:
        status: dict[str, Any] = json.loads(raw)
    except ValueError as exc:
        raise CollectError("the collector's exit status was unreadable: outputs refused") from exc
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", ""))
            except ValueError:
                break
    raise CollectError("the collector could not run (no exit code): outputs refused")


def exec_tar(
    core: k8s_client.CoreV1Api,
    namespace: str,
    pod: str,
    staging: OutputStaging,
    limit_bytes: int,
    timeout_s: float,
    heartbeat: Callable[[], None] = lambda: None,
) -> list[Path]:
    """Pack /output in the collector, spool it to disk, check it, unpack it into staging.

    On success the outputs are in `staging.tree` (the caller commits them); on failure
    raises `CollectError` and the caller discards the staging area.
    """
    too_large = f"outputs exceed the limit of {limit_bytes} bytes"
    try:
        code = exec_to_file(
            core,
            namespace,
            pod,
            packer_command(limit_bytes),
            staging.spool,
            limit_bytes + FRAMING_ALLOWANCE,
            timeout_s,
            heartbeat,
        )
    except CollectError as exc:
        if str(exc) == "outputs exceed the limit":
            raise CollectError(too_large) from exc
        raise
    if code == EXIT_TOO_LARGE:
        raise CollectError(too_large)
    if code == EXIT_TOO_MANY:
        raise CollectError(
            f"outputs have more than {MAX_ENTRIES} entries or a path longer than {MAX_PATH_BYTES} bytes"
        )
    if code != 0:
        raise CollectError(f"the collector failed with exit code {code}")
    try:
        with staging.spool.open("rb") as fh:
            return extract(fh, staging.tree, limit_bytes)
    except OutputTooLarge as exc:
        raise CollectError(too_large) from exc
    except OutputTooComplex as exc:
        raise CollectError(
            f"outputs have more than {MAX_ENTRIES} entries or a path longer than {MAX_PATH_BYTES} bytes"
        ) from exc
    except TruncatedArchive as exc:
        raise CollectError("the output archive was cut short or corrupt: outputs refused") from exc
    except (ValueError, OSError, tarfile.TarError) as exc:  # tarfile errors, refused members, disk trouble
        log.warning("extracting outputs of %s/%s failed: %s", namespace, pod, exc)
        raise CollectError("the output archive could not be unpacked safely: outputs refused") from exc
