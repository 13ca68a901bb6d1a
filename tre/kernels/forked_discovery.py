"""Discover the cohort's series in forked processes while the job loads its kernels.

Why: before the first slice can be read the job must import its libraries, load the Numba
cache and parse every file's header (~0.5 ms a file, seconds for thousands of files); all
three are Python code holding the GIL, so on threads they ran one after the other on one
core (~2 s on a 1455-file cohort, a third of an uncompressed job) while the other cores
idled. Processes forked right after the job's imports (so they import nothing) parse the
headers, chunk by chunk, and send the compact `SliceHeader` records
back through a pipe (~1 KB each, pickled), while this process loads the kernels.

This process parses files too, beside its kernels' cache load (on a thread). Who parses
what is decided as they go: the files are cut into chunks of 16 (more past 16,384 files), the chunks' numbers
wait in a pipe, and every process (this one included) takes the next number when it is free,
so all finish within a chunk of each other. The fixed shares before (this process the last
515 of 2,030 files, sized for a 0.65 s cache load on the AMD machine) left the child parsing
alone for 0.3-0.65 s on the Xeon that replaced it, where the cache loads in ~0.5 s and the
load of other sessions moves both (issue 13, ninth round). The headers are put back in file
order by chunk number, so the result is the same whoever parsed what.

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
import struct
import threading
from pathlib import Path

from tre.kernels.dicom import SliceHeader, group_headers, list_files, slice_header
from tre.kernels.timeline import DISABLED, Timeline

Groups = dict[str, list[SliceHeader]]
MIN_FILES_PER_PROCESS = 64  # below this a second process costs more than it saves
CHUNK_FILES = 16  # files a chunk (~10 ms of parsing): the processes end this close together
# Every chunk number is written into the pipe before any process reads it, so they must fit
# in the one page every pipe holds even past the user's pipe-buffer quota (pipe(7)).
MAX_CHUNKS = 1024
_TOKEN = struct.Struct("<I")


def chunk_files(files: int) -> int:
    """Files a chunk for a cohort of ``files``: CHUNK_FILES, or more when the numbers of
    CHUNK_FILES-file chunks would not fit in one page of a pipe."""
    return max(CHUNK_FILES, -(-files // MAX_CHUNKS))


class ForkedDiscovery:
    """`tre.kernels.dicom.discover_headers` of ``root`` in up to ``processes`` child
    processes, started now; `result` collects it."""

    def __init__(self, root: Path, timeline: Timeline = DISABLED, processes: int = 1) -> None:
        self._children: list[tuple[int, int]] = []  # (pid, read end of its pipe), in file order
        self._timeline = timeline
        self._files: list[Path] = []
        self._size = CHUNK_FILES
        self._chunks = 0
        self._tokens: int | None = None  # read end of the pipe of chunk numbers
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return
        self._files = files = list_files(root)
        n = max(1, min(processes, len(files) // MIN_FILES_PER_PROCESS))
        self._size = chunk_files(len(files))
        self._chunks = -(-len(files) // self._size)
        if not self._deal():
            return
        for i in range(n):
            if not self._fork(i):
                self.close()  # a partial set of children is no use: discover in-process
                return

    def _deal(self) -> bool:
        """Every chunk's number into a pipe whose write end is then closed: a process that
        reads nothing more has no chunk left to parse."""
        try:
            read_fd, write_fd = os.pipe()
        except OSError:
            return False
        data = b"".join(_TOKEN.pack(i) for i in range(self._chunks))
        try:
            os.set_blocking(write_fd, False)
            written = os.write(write_fd, data) if data else 0
        except OSError:
            written = -1
        finally:
            os.close(write_fd)
        if written != len(data):
            os.close(read_fd)
            return False
        self._tokens = read_fd
        return True

    def _fork(self, number: int) -> bool:
        assert self._tokens is not None  # noqa: S101 - dealt before any fork
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
            _child(self._files, self._size, self._tokens, write_fd, self._timeline, number)
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
        if not self._children or self._tokens is None:
            return None
        start = self._timeline.now()
        parts = _parse_chunks(self._files, self._size, self._tokens)  # beside the children
        if parts:
            self._timeline.add("discover", None, start, self._timeline.now(), thread="discovery-here")
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
                theirs, begin, end, number = pickle.loads(data)  # noqa: S301 - our own child, see module doc
                parts.extend(theirs)
                spans.append((begin, end, number))
        except Exception:  # noqa: BLE001 - a broken reply means: discover in-process
            return None
        finally:
            self.close()
        parts.sort(key=lambda part: part[0])
        if [i for i, _ in parts] != list(range(self._chunks)):  # a chunk lost or parsed twice
            return None
        for begin, end, number in spans:
            self._timeline.add("discover", None, begin, end, thread=f"discovery-process-{number}")
        return group_headers(h for _, heads in parts for h in heads)

    def close(self) -> None:
        """Stop children whose result is no longer wanted (the job failed before using it)."""
        while self._children:
            pid, fd = self._children.pop()
            with contextlib.suppress(OSError):
                os.close(fd)
            _stop(pid)
        if self._tokens is not None:
            with contextlib.suppress(OSError):
                os.close(self._tokens)
            self._tokens = None


Chunk = tuple[int, list[SliceHeader | None]]


def _take(tokens: int) -> int | None:
    """The next chunk's number, or None when none is left. (A pipe read of 4 bytes is one
    read under the pipe's lock, and every write put whole numbers: never half of one.)"""
    data = os.read(tokens, _TOKEN.size)
    return _TOKEN.unpack(data)[0] if len(data) == _TOKEN.size else None


def _parse_chunks(files: list[Path], size: int, tokens: int) -> list[Chunk]:
    """Parse chunks until none is left: (chunk number, its files' headers) each."""
    parts: list[Chunk] = []
    while (i := _take(tokens)) is not None:
        parts.append((i, [slice_header(path) for path in files[i * size : (i + 1) * size]]))
    return parts


def _stop(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)


def _child(files: list[Path], size: int, tokens: int, write_fd: int, timeline: Timeline, number: int) -> None:
    code = 1
    try:
        start = timeline.now()
        parts = _parse_chunks(files, size, tokens)
        data = pickle.dumps((parts, start, timeline.now(), number), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(data)
        code = 0
    except BaseException:  # noqa: BLE001, S110 - the parent discovers in-process instead
        pass
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
