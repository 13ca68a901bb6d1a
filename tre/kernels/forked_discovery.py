"""Discover the cohort's series in a forked process while the job loads its kernels.

Why: before the first slice can be read the job must import its libraries, load the Numba
cache and parse every file's header (~0.5 ms a file); all three are Python code holding the
GIL, so on threads they ran one after the other on one core (~2 s on a 1455-file cohort,
a third of an uncompressed job) while the second core idled. A process forked right after
pydicom is imported (so the child imports nothing) parses the headers on the other core
and sends the compact `SliceHeader` records back through a pipe (~1 KB each, pickled),
while this process loads the kernels.

Only where it is safe: ``os.fork`` exists and this process runs a single thread (forking a
threaded process can copy a held lock). Otherwise, or when the child fails for any reason,
`result` returns None and the caller discovers in-process, with the same result. The data
comes from a child of this very process running this code, so unpickling it trusts nothing
the parent would not.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tre.kernels.timeline import DISABLED, Timeline

if TYPE_CHECKING:
    from tre.kernels.dicom import SliceHeader

Groups = dict[str, list["SliceHeader"]]


class ForkedDiscovery:
    """`tre.kernels.dicom.discover_headers` of ``root`` in a child process, started now."""

    def __init__(self, root: Path, timeline: Timeline = DISABLED) -> None:
        self._pid: int | None = None
        self._fd: int | None = None
        self._timeline = timeline
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # e.g. a process limit in the sandbox: discover in-process
            os.close(read_fd)
            os.close(write_fd)
            return
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            _child(root, write_fd, timeline)
        os.close(write_fd)
        self._pid, self._fd = pid, read_fd

    @property
    def started(self) -> bool:
        return self._pid is not None

    def result(self) -> Groups | None:
        """The child's groups (waits for it), or None: no child, or it failed."""
        if self._pid is None or self._fd is None:
            return None
        with os.fdopen(self._fd, "rb") as fh:
            data = fh.read()
        self._fd = None
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if status != 0 or not data:
            return None
        try:
            groups, start, end = pickle.loads(data)  # noqa: S301 - our own child, see module doc
        except Exception:  # noqa: BLE001 - a broken reply means: discover in-process
            return None
        self._timeline.add("discover", None, start, end, thread="discovery-process")
        return groups if isinstance(groups, dict) else None

    def close(self) -> None:
        """Stop a child whose result is no longer wanted (the job failed before using it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            self._pid = None


def _child(root: Path, write_fd: int, timeline: Timeline) -> None:
    code = 1
    try:
        from tre.kernels.dicom import discover_headers

        start = timeline.now()
        groups = discover_headers(root)
        data = pickle.dumps((groups, start, timeline.now()), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(data)
        code = 0
    except BaseException:  # noqa: BLE001, S110 - the parent discovers in-process instead
        pass
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
