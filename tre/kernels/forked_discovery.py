"""Discover the cohort's series in forked processes while the job loads its kernels.

Why: before the first slice can be read the job must import its libraries, load the Numba
cache and parse every file's header (~0.5 ms a file, seconds for thousands of files); all
three are Python code holding the GIL, so on threads they ran one after the other on one
core (~2 s on a 1455-file cohort, a third of an uncompressed job) while the other cores
idled. Processes forked right after the job's imports (so they import nothing) parse the
headers, each a contiguous share of the files, and send the compact `SliceHeader` records
back through a pipe (~1 KB each, pickled), while this process loads the kernels.

Only where it is safe: ``os.fork`` exists and this process runs a single thread (forking a
threaded process can copy a held lock). Otherwise, or when any child fails for any reason,
`result` returns None and the caller discovers in-process, with the same result. The data
comes from children of this very process running this code, so unpickling it trusts
nothing the parent would not.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
from pathlib import Path

from tre.kernels.dicom import SliceHeader, group_headers, list_files, slice_header
from tre.kernels.timeline import DISABLED, Timeline

Groups = dict[str, list[SliceHeader]]
MIN_FILES_PER_PROCESS = 64  # below this a second process costs more than it saves


class ForkedDiscovery:
    """`tre.kernels.dicom.discover_headers` of ``root`` in up to ``processes`` child
    processes, started now; `result` collects it."""

    def __init__(self, root: Path, timeline: Timeline = DISABLED, processes: int = 1) -> None:
        self._children: list[tuple[int, int]] = []  # (pid, read end of its pipe), in file order
        self._timeline = timeline
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return
        files = list_files(root)
        n = max(1, min(processes, len(files) // MIN_FILES_PER_PROCESS))
        for i in range(n):
            share = files[i * len(files) // n : (i + 1) * len(files) // n]
            if not self._fork(share, i):
                self.close()  # a partial set of children is no use: discover in-process
                return

    def _fork(self, files: list[Path], number: int) -> bool:
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # e.g. a process limit in the sandbox
            os.close(read_fd)
            os.close(write_fd)
            return False
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            for _pid, fd in self._children:  # its elder siblings' pipes are not its business
                os.close(fd)
            _child(files, write_fd, self._timeline, number)
        os.close(write_fd)
        self._children.append((pid, read_fd))
        return True

    @property
    def started(self) -> bool:
        return bool(self._children)

    @property
    def processes(self) -> int:
        """Children still to be collected."""
        return len(self._children)

    def result(self) -> Groups | None:
        """The series' headers (waits for the children), or None: none started, or one failed."""
        if not self._children:
            return None
        heads: list[SliceHeader | None] = []
        spans: list[tuple[float, float, int]] = []
        try:
            while self._children:
                pid, fd = self._children.pop(0)
                try:
                    with os.fdopen(fd, "rb") as fh:
                        data = fh.read()
                except OSError:
                    _stop(pid)
                    return None
                _, status = os.waitpid(pid, 0)
                if status != 0 or not data:
                    return None
                share, start, end, number = pickle.loads(data)  # noqa: S301 - our own child, see module doc
                heads.extend(share)
                spans.append((start, end, number))
        except Exception:  # noqa: BLE001 - a broken reply means: discover in-process
            return None
        finally:
            self.close()
        for start, end, number in spans:
            self._timeline.add("discover", None, start, end, thread=f"discovery-process-{number}")
        return group_headers(heads)

    def close(self) -> None:
        """Stop children whose result is no longer wanted (the job failed before using it)."""
        while self._children:
            pid, fd = self._children.pop()
            with contextlib.suppress(OSError):
                os.close(fd)
            _stop(pid)


def _stop(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)


def _child(files: list[Path], write_fd: int, timeline: Timeline, number: int) -> None:
    code = 1
    try:
        start = timeline.now()
        share = [slice_header(path) for path in files]
        data = pickle.dumps((share, start, timeline.now(), number), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(data)
        code = 0
    except BaseException:  # noqa: BLE001, S110 - the parent discovers in-process instead
        pass
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
