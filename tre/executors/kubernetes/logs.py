"""Streaming a pod's log into the job's log file while the job runs.

The official client only streams when asked for the raw response
(``follow=True, _preload_content=False``); otherwise it buffers the whole log until the
container exits. A thread copies the byte stream so the watch loop is never blocked.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)


class LogFollower:
    """Copies one container's log to a file, capped at `limit_bytes`."""

    def __init__(
        self,
        core: k8s_client.CoreV1Api,
        namespace: str,
        pod: str,
        container: str,
        dest: Path,
        limit_bytes: int,
    ) -> None:
        self._core = core
        self._namespace = namespace
        self._pod = pod
        self._container = container
        self._dest = dest
        self._limit = limit_bytes
        self.error: str | None = None
        self.bytes_written = 0
        self._thread = threading.Thread(target=self._run, name=f"k8s-log-{pod}", daemon=True)

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        self._dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            resp: Any = self._core.read_namespaced_pod_log(
                self._pod,
                self._namespace,
                container=self._container,
                follow=True,
                _preload_content=False,
            )
            try:
                with self._dest.open("wb") as fh:
                    for chunk in resp.stream(64 * 1024):
                        room = self._limit - self.bytes_written
                        if room <= 0:
                            continue  # keep draining so the kubelet is not held up
                        fh.write(chunk[:room])
                        self.bytes_written += min(len(chunk), room)
                        fh.flush()
                    if self.bytes_written >= self._limit:
                        fh.write(f"\n[tre: log truncated at {self._limit} bytes]\n".encode())
            finally:
                resp.release_conn()
        except (ApiException, HTTPError, OSError) as exc:
            self.error = f"log stream ended early: {exc}"
            log.warning("%s/%s: %s", self._namespace, self._pod, self.error)
