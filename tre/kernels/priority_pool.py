"""A thread pool that runs the earliest series' slices first.

Why: the cohort prefetches series N+1 (and N+2) while the kernels run on series N, and all of
them read and decode their slices on one shared pool of ``--workers`` threads. With a plain
FIFO pool two loading series interleave their tasks, so series N is ready only when N+1 is
nearly decoded too: on a cohort starting with a raw series and a JPEG 2000 one, the raw
series waited ~29 s behind the JPEG 2000 slices and the kernels and the writer sat idle.
Here each series submits through its own `Lane`, tasks of the lowest lane number run first
(FIFO within a lane), so the next series gets every thread it can use and the prefetched ones
take what is left: decoding of N+1 overlaps the kernels of N without delaying N.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from tre.kernels.stack_room import with_stack_room

T = TypeVar("T")


class PriorityThreadPool:
    """``workers`` threads serving tasks in (lane, submission) order; `shutdown` joins them
    (they are daemon threads only so that an interpreter exiting on an error never hangs)."""

    def __init__(self, workers: int, name: str = "decode") -> None:
        self._tasks: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._closed = False
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=with_stack_room, args=(self._serve,), name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def lane(self, priority: int) -> Lane:
        """An executor whose tasks run ahead of every lane with a larger ``priority``."""
        return Lane(self, priority)

    def submit(self, priority: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            self._tasks.put((priority, next(self._seq), (fut, fn, args, kwargs)))
        return fut

    def _serve(self) -> None:
        while True:
            _prio, _seq, item = self._tasks.get()
            if item is None:
                return
            fut, fn, args, kwargs = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                fut.set_exception(exc)

    def shutdown(self, cancel_futures: bool = False) -> None:
        """Stop the threads after the queued tasks (or cancel those not started yet)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        _p, _s, item = self._tasks.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            last = 1 << 62  # after every real task
            for _ in self._threads:
                self._tasks.put((last, next(self._seq), None))
        for t in self._threads:
            t.join()


class Lane(Executor):
    """One series' view of a `PriorityThreadPool` (``map`` comes from `Executor`)."""

    def __init__(self, pool: PriorityThreadPool, priority: int) -> None:
        self._pool = pool
        self._priority = priority

    @property
    def _max_workers(self) -> int:  # read by load_series to size chunks
        return self._pool.workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._pool.submit(self._priority, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """A lane owns no threads; the pool is shut down by its owner."""
