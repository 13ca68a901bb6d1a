"""Discover the cohort's series in forked processes while the job loads its kernels.

Why: before the first slice can be read the job must import its libraries, load the Numba
cache and parse every file's header (~0.5 ms a file, seconds for thousands of files); all
three are Python code holding the GIL, so on threads they ran one after the other on one
core (~2 s on a 1455-file cohort, a third of an uncompressed job) while the other cores
idled. Processes forked right after the job's imports (so they import nothing) parse the
headers, each a contiguous share of the files, and send the compact `SliceHeader` records
back through a pipe (~1 KB each, pickled), while this process loads the kernels.

This process parses a share too, the last files (`own_share`): it loads the kernels' cache
at the same time, on a thread, but that takes a fixed ~0.65 s while discovery grows with the
cohort, so with one child on a 2-core machine the child parsed alone for ~0.6 s after the
cache was loaded (2,030 files: 1.26 s of parsing against 0.66 s of cache load; issue 13,
eighth round). The shares are sized so that both finish together.

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
# The kernels' cache load in this process, in files parsed in the same time (~0.65 s at
# ~0.6 ms a file on the dev machine; issue 13, eighth round).
WARM_LOAD_FILES = 1000


def own_share(files: int, children: int, warm_files: int = WARM_LOAD_FILES) -> int:
    """How many of ``files`` this process parses beside ``children`` forked ones: an equal
    share of the parsing plus the cache load (``warm_files``) for everyone, less the cache
    load it also runs."""
    return max(0, (files + warm_files) // (children + 1) - warm_files)


class ForkedDiscovery:
    """`tre.kernels.dicom.discover_headers` of ``root`` in up to ``processes`` child
    processes, started now; `result` collects it."""

    def __init__(
        self, root: Path, timeline: Timeline = DISABLED, processes: int = 1, warm_files: int = WARM_LOAD_FILES
    ) -> None:
        self._children: list[tuple[int, int]] = []  # (pid, read end of its pipe), in file order
        self._own: list[Path] = []  # the last files, parsed here by `result`
        self._timeline = timeline
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return
        files = list_files(root)
        n = max(1, min(processes, len(files) // MIN_FILES_PER_PROCESS))
        forked = files[: len(files) - own_share(len(files), n, warm_files)]
        self._own = files[len(forked) :]
        for i in range(n):
            share = forked[i * len(forked) // n : (i + 1) * len(forked) // n]
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
        start = self._timeline.now()
        own = [slice_header(path) for path in self._own]  # while the children parse theirs
        if own:
            self._timeline.add("discover", None, start, self._timeline.now(), thread="discovery-here")
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
        for begin, end, number in spans:
            self._timeline.add("discover", None, begin, end, thread=f"discovery-process-{number}")
        return group_headers(heads + own)

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
