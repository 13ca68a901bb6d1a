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

The same holds for the stored pixels a series is decoded into (`InputPool`, issue 13's
eighth round): each 512x512x280 int16 volume is ~140 MiB of fresh pages, zeroed by the
kernel on first touch in the decode threads (~0.1 s of CPU a series, 0.8 s of the mixed
benchmark cohort's 41 s); the volume of a series whose kernels have run is free when the
series two places later starts loading.
"""

from __future__ import annotations

import threading

import numpy as np


class BufferPool:
    """Flat buffers of any of ``kinds`` (dtypes), lent out as C-contiguous views of a
    requested shape and dtype; see the module docstring.

    `take` lends a view of a free buffer with room for the shape (or None: the caller
    allocates a fresh array), `give` returns an array once nothing reads it any more.
    The views handed out have always been written before; their contents are stale values
    of an earlier use, so a caller must write every element (as with ``np.empty``).
    """

    def __init__(self, max_free: int = 1, kinds: tuple[np.dtype, ...] | None = None) -> None:
        if max_free < 1:
            raise ValueError("max_free must be at least 1")
        self.max_free = max_free
        self.kinds = kinds  # None: any dtype
        self._free: list[np.ndarray] = []  # flat uint8 views of buffers, each written before
        self._lock = threading.Lock()
        self.reused = 0  # arrays lent from a reused buffer (for tests and timelines)
        self._parent: BufferPool | None = None  # set on a pool made by `hand_over`

    def take_as(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray | None:
        """A view of ``shape`` and ``dtype`` into the smallest free buffer that holds it,
        or None.

        Free buffers too small for ``shape`` are dropped first, so that the fresh array the
        caller then allocates does not come on top of them."""
        kind = np.dtype(dtype)
        need = int(np.prod(shape)) * kind.itemsize
        with self._lock:
            fits = [b for b in self._free if b.size >= need]
            if not fits:
                self._free.clear()
                return None
            buf = min(fits, key=lambda b: b.size)
            self._free = [b for b in self._free if b is not buf]
            self.reused += 1
        if self._parent is not None:
            with self._parent._lock:
                self._parent.reused += 1
        return buf[:need].view(kind).reshape(shape)

    def hand_over(self) -> BufferPool:
        """This pool's free buffers, moved into a pool of their own for one taker.

        Why: a loader thread taking from the shared pool raced the main thread's next `give`
        (with one free buffer kept, the later of two buffers was dropped when the earlier one
        had not been taken yet), so which series reused a volume depended on thread timing.
        Moved on the thread that gives, at the moment a series is submitted, the buffer of
        series i goes to series i + 2 whatever the timing; one it does not fit is dropped
        by its `take_as`, as before."""
        child = BufferPool(self.max_free, self.kinds)
        child._parent = self
        with self._lock:
            child._free, self._free = self._free, []
        return child

    def give(self, array: np.ndarray) -> None:
        """Return an array (a view from `take_as`, or a fresh C-contiguous array)."""
        buf = array
        while isinstance(buf.base, np.ndarray):
            buf = buf.base
        if self.kinds is not None and buf.dtype not in self.kinds:
            return
        if buf.base is not None or not buf.flags.c_contiguous or not buf.flags.writeable:
            return  # memory this pool does not own (a file map, a foreign buffer): never reused
        flat = buf.reshape(-1).view(np.uint8)
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


class OutputPool(BufferPool):
    """Buffers for `tre.kernels.pipeline.run_recipe` outputs (float32, or int16 for a
    quantised output, `tre.kernels.quantise`: one buffer serves either); see the module
    docstring.

    `take` lends a C-contiguous view of a free buffer with room for the shape (or None: the
    caller allocates a fresh array), `give` returns an output once nothing reads it any more
    (its writer finished). The views handed out have always been written before.
    """

    def __init__(self, max_free: int = 1) -> None:
        super().__init__(max_free, (np.dtype(np.float32), np.dtype(np.int16)))

    def take(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """A float32 view of ``shape`` (see `BufferPool.take_as`)."""
        return self.take_as(shape, np.float32)


class InputPool(BufferPool):
    """Buffers for the stored pixels of the series a cohort loads (int16, uint16 or any
    other stored type): `tre.kernels.dicom.load_series` takes the volume from it, the cohort
    gives it back once the series' kernels have run. Every element of a volume is written
    by the loader (each plane is read or decoded into its row), so stale values never
    reach the kernels."""

    def __init__(self, max_free: int = 1) -> None:
        super().__init__(max_free, None)
