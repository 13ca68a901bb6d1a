"""Output buffers that a cohort job reuses between series, with a fixed bound on memory.

Why: writing a series' output into a fresh array pays the page faults and zeroing of every
page on first touch (~20-40 ms CPU for the benchmark's 227 MiB output on this machine, a
third of the normalize pass), which a copy into memory already written -- what the
bandwidth bound assumes -- does not. A cohort preprocesses one series after another with
outputs of similar size, so the buffer of a series whose output has been written can take
the next series' output.

Memory stays bounded: the pool keeps at most ``max_free`` free buffers (one is enough for
the cohort's steady state: the buffer of series i - 2 is free while series i - 1 is being
written and series i computed), a free buffer that is too small for the next output is
dropped before that output is allocated, and a buffer is only ever lent out as one output.
So every buffer alive is an output in flight (as without a pool) or one of ``max_free``
free buffers, none larger than the largest output of the run so far.
"""

from __future__ import annotations

import threading

import numpy as np


class OutputPool:
    """float32 buffers for `tre.kernels.pipeline.run_recipe` outputs; see the module docstring.

    `take` lends a C-contiguous view of a free buffer with room for the shape (or None: the
    caller allocates a fresh array), `give` returns an output once nothing reads it any more
    (its writer finished). The views handed out have always been written before.
    """

    def __init__(self, max_free: int = 1) -> None:
        if max_free < 1:
            raise ValueError("max_free must be at least 1")
        self.max_free = max_free
        self._free: list[np.ndarray] = []  # flat float32 buffers, each written before
        self._lock = threading.Lock()
        self.reused = 0  # outputs written into a reused buffer (for tests and timelines)

    def take(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """A view of ``shape`` into the smallest free buffer that holds it, or None.

        Free buffers too small for ``shape`` are dropped first, so that the fresh array the
        caller then allocates does not come on top of them."""
        need = int(np.prod(shape))
        with self._lock:
            fits = [b for b in self._free if b.size >= need]
            if not fits:
                self._free.clear()
                return None
            buf = min(fits, key=lambda b: b.size)
            self._free = [b for b in self._free if b is not buf]
            self.reused += 1
        return buf[:need].reshape(shape)

    def give(self, image: np.ndarray) -> None:
        """Return an output (a view from `take`, or a fresh float32 C-contiguous array)."""
        buf = image
        while isinstance(buf.base, np.ndarray):
            buf = buf.base
        if buf.dtype != np.float32 or not buf.flags.c_contiguous or not buf.flags.writeable:
            return
        flat = buf.reshape(-1)
        with self._lock:
            if any(b.ctypes.data == flat.ctypes.data for b in self._free):
                return  # given twice: keep one entry
            self._free.append(flat)
            self._free.sort(key=lambda b: b.size, reverse=True)
            del self._free[self.max_free :]  # keep the largest

    def free_bytes(self) -> int:
        """Bytes held in free buffers (what the pool adds to the job's memory at rest)."""
        with self._lock:
            return sum(b.nbytes for b in self._free)
