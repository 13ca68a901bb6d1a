"""Streaming a pod's log into the job's log file while the job runs, resumable by offset.

The official client only streams when asked for the raw response
(``follow=True, _preload_content=False``); otherwise it buffers the whole log until the
container exits. A thread copies the byte stream so the watch loop is never blocked.

Reattach (a restarted worker following the same pod) must neither overwrite nor repeat
what the previous worker saved. The log is requested with ``timestamps=true``; after every
chunk a small state file beside the log records how many bytes are saved and the
timestamp of the last line. A resumed follower truncates the file to that offset (dropping
a half-written tail), opens it for append, asks the kubelet for the lines since a little
before that timestamp, and skips every line not newer than it. Lines the kubelet rotated
away (10 MiB files by default) while no worker was following cannot be fetched again and
are missing from the file (docs/deploy.md says so).
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import IO, Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)

_TS = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")
MAX_LINE = 64 * 1024  # a line longer than this is written in pieces (bounded buffer)
SINCE_MARGIN_S = 60  # clock skew between this host and the node (overlap is deduplicated)


def parse_ts(raw: bytes) -> tuple[int, int] | None:
    """(epoch seconds, nanoseconds) of an RFC 3339 timestamp as the kubelet writes it."""
    m = _TS.match(raw)
    if not m:
        return None
    secs = calendar.timegm(time.strptime(m.group(1).decode(), "%Y-%m-%dT%H:%M:%S"))
    return secs, int((m.group(2) or b"0").ljust(9, b"0"))


class LogFollower:
    """Copies one container's log to a file, capped at `limit_bytes`, resumable after a restart."""

    def __init__(
        self,
        core: k8s_client.CoreV1Api,
        namespace: str,
        pod: str,
        container: str,
        dest: Path,
        limit_bytes: int,
        resume: bool = False,
    ) -> None:
        self._core = core
        self._namespace = namespace
        self._pod = pod
        self._container = container
        self._dest = dest
        self._state = dest.with_name(dest.name + ".k8s-offset")
        self._limit = limit_bytes
        self._resume = resume
        self.error: str | None = None
        self.bytes_written = 0
        self._last: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._run, name=f"k8s-log-{pod}", daemon=True)

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _load_state(self) -> None:
        try:
            state = json.loads(self._state.read_text())
            if state.get("pod") != self._pod:
                return  # another pod (should not happen with backoffLimit 0): start afresh
            self.bytes_written = int(state["bytes"])
            last = state.get("last")
            self._last = (int(last[0]), int(last[1])) if last else None
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            self.bytes_written = 0
            self._last = None

    def _save_state(self) -> None:
        tmp = self._state.with_name(self._state.name + ".tmp")
        tmp.write_text(json.dumps({"pod": self._pod, "bytes": self.bytes_written, "last": self._last}))
        os.replace(tmp, self._state)

    def _open(self) -> IO[bytes]:
        self._dest.parent.mkdir(parents=True, exist_ok=True)
        if self._resume:
            self._load_state()
        if self._resume and self._dest.exists():
            fh = self._dest.open("r+b")
            fh.truncate(min(self.bytes_written, fh.seek(0, os.SEEK_END)))
            self.bytes_written = fh.seek(0, os.SEEK_END)
            return fh
        self.bytes_written = 0
        self._last = None
        return self._dest.open("wb")

    def _write(self, fh: IO[bytes], data: bytes) -> None:
        room = self._limit - self.bytes_written
        if room <= 0:
            return  # keep draining so the kubelet is not held up
        fh.write(data[:room])
        self.bytes_written += min(len(data), room)

    def _line(self, fh: IO[bytes], line: bytes) -> None:
        stamp, _, text = line.partition(b" ")
        ts = parse_ts(stamp)
        if ts is None:
            self._write(fh, line)  # not a timestamped line (a piece of an over-long one)
            return
        if self._last is not None and ts <= self._last:
            return  # saved by the previous follower already
        self._last = ts
        self._write(fh, text)

    def _run(self) -> None:
        try:
            fh = self._open()
        except OSError as exc:
            self.error = f"cannot open the log file: {exc}"
            return
        try:
            kwargs: dict[str, Any] = {"timestamps": True}
            if self._last is not None:
                kwargs["since_seconds"] = max(1, int(time.time()) - self._last[0] + SINCE_MARGIN_S)
            resp: Any = self._core.read_namespaced_pod_log(
                self._pod,
                self._namespace,
                container=self._container,
                follow=True,
                _preload_content=False,
                **kwargs,
            )
            try:
                pending = b""
                for chunk in resp.stream(64 * 1024):
                    pending += chunk
                    while True:
                        nl = pending.find(b"\n")
                        if nl < 0:
                            break
                        self._line(fh, pending[: nl + 1])
                        pending = pending[nl + 1 :]
                    if len(pending) > MAX_LINE:
                        self._write(fh, pending)
                        pending = b""
                    fh.flush()
                    self._save_state()
                if pending:
                    self._line(fh, pending)
                if self.bytes_written >= self._limit:
                    fh.write(f"\n[tre: log truncated at {self._limit} bytes]\n".encode())
                    self.bytes_written = self._limit
                fh.flush()
                self._save_state()
            finally:
                resp.release_conn()
        except (ApiException, HTTPError, OSError) as exc:
            self.error = f"log stream ended early: {exc}"
            log.warning("%s/%s: %s", self._namespace, self._pod, self.error)
            try:  # say so in the log itself rather than hand over a silently short one
                fh.write(b"\n[tre: the log stream ended early; lines may be missing]\n")
            except OSError:
                pass
        finally:
            fh.close()
