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
    """(epoch seconds, nanoseconds) of an RFC 3339 timestamp as the kubelet writes it; None
    for anything else (never an exception: a follower thread that raised stopped saving)."""
    m = _TS.match(raw)
    if not m:
        return None
    try:  # the pattern admits 10:15:99 or month 13; such text is not a timestamp either
        secs = calendar.timegm(time.strptime(m.group(1).decode(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
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
        # The last line the previous follower saved: a resumed stream skips lines up to it.
        # Only then: within one stream, a line stamped no later than the one before (two
        # lines in one nanosecond, the node's clock stepped back) is still new.
        self._resume_after: tuple[int, int] | None = None
        # Within a line longer than MAX_LINE, saved in pieces: whether it is being kept (None:
        # at the start of a line, where the kubelet's timestamp comes). Only that start is
        # parsed; a later piece begins with whatever the job printed, a forged stamp included.
        self._keep_line: bool | None = None
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
            self._resume_after = self._last
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
            return
        fh.write(data[:room])
        self.bytes_written += min(len(data), room)

    def _piece(self, fh: IO[bytes], data: bytes, ends_line: bool) -> None:
        """A whole line, or a piece of one longer than MAX_LINE (``ends_line`` False)."""
        if self._keep_line is None:  # the start of a line: the kubelet's timestamp, a space
            stamp, sep, text = data.partition(b" ")
            ts = parse_ts(stamp) if sep else None
            if ts is None:
                keep, text = True, data  # not timestamped (should not happen): keep as is
            elif self._resume_after is not None and ts <= self._resume_after:
                keep = False  # saved by the previous follower already
            else:
                self._last, keep = max(ts, self._last or ts), True
        else:
            keep, text = self._keep_line, data
        if keep:
            self._write(fh, text)
        self._keep_line = None if ends_line else keep

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
                        self._piece(fh, pending[: nl + 1], ends_line=True)
                        pending = pending[nl + 1 :]
                    if len(pending) > MAX_LINE:
                        self._piece(fh, pending, ends_line=False)
                        pending = b""
                    fh.flush()
                    self._save_state()
                    if self.bytes_written >= self._limit:
                        # Over budget: hang up. Reading on would only drop every byte the job
                        # prints from here to its end, through the API server and this worker.
                        pending = b""
                        resp.close()
                        break
                if pending:
                    self._piece(fh, pending, ends_line=True)
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
