"""Benchmark: where the CPU recipe's time goes against the bandwidth bound, part by part.

Why: issue 13 asks for the window recipe within 3x of the memory-bandwidth bound; the
recipe's two passes mix memory traffic, page zeroing and compute, and the machine is shared,
so each part is timed on its own, all parts interleaved round by round in one process (the
same load hits every part), wall and CPU, min and median. Parts:

* ``read input``: one parallel read of the int16 input (what pass 1 and pass 2 each pay at
  least); ``in-plane, full grid`` / ``in-plane, crop``: the y and x resampling of every input
  slice as pass 1 (the whole plane) and pass 2 (the crop's rows and columns) do it;
* ``stats pass``, ``normalize reused`` (into a buffer written before), ``normalize fresh``
  (into ``np.empty``: pays the first touch of the output's pages);
* ``fill written`` / ``fill fresh`` / ``fill fresh mmap+hugepage`` / ``fill after populate``:
  writing the output's bytes alone, into written memory, into a fresh NumPy array, into a
  2 MiB-aligned anonymous mapping with ``MADV_HUGEPAGE``, and into such a mapping after
  ``MADV_POPULATE_WRITE`` (the populate's own time included);
* ``z-score in place``: ``out = out * a + b`` over the output (read + write), the second pass
  of a one-sweep design that writes windowed values first and z-scores them once the mean
  and std are known;
* ``recipe fresh`` / ``recipe populate overlap``: the whole recipe into a fresh array, and with
  a thread populating the output's pages (``MADV_POPULATE_WRITE`` through ctypes, which drops
  the GIL) while pass 1 runs. The overlap needs the output's size before pass 1 ends, which
  the kernels do not know: it is priced with the crop of a first run.

    PYTHONPATH=. python benchmarks/bench_kernel_parts.py --rounds 7 [--threads 1]
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import bench_preprocess as bp  # noqa: E402

from tre.kernels import cpu, pipeline  # noqa: E402
from tre.kernels.grid import grid_tables  # noqa: E402

MADV_HUGEPAGE = 14
MADV_POPULATE_WRITE = 23  # Linux 5.14
HUGE = 2 << 20
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


@njit(parallel=True, cache=False, fastmath=True)
def read_all(raw: np.ndarray) -> int:
    """Sum of the input, plane by plane on every thread: one read of its bytes."""
    acc = 0
    for z in prange(raw.shape[0]):
        plane = raw[z]
        for j in range(plane.shape[0]):
            row = plane[j]
            s = np.int32(0)  # a row of int16 sums exactly in int32; integer lanes vectorise
            for x in range(row.shape[0]):
                s += np.int32(row[x])
            acc += int(s)
    return acc


@njit(parallel=True, cache=False, fastmath=True)
def fill(out: np.ndarray, value: np.float32) -> None:
    flat = out.reshape(-1)
    n = flat.shape[0]
    block = 1 << 18
    for b in prange((n + block - 1) // block):
        flat[b * block : min(n, (b + 1) * block)] = value


@njit(parallel=True, cache=False, fastmath=True)
def affine_in_place(out: np.ndarray, a: np.float32, b: np.float32) -> None:
    flat = out.reshape(-1)
    n = flat.shape[0]
    block = 1 << 18
    for k in prange((n + block - 1) // block):
        for i in range(k * block, min(n, (k + 1) * block)):
            flat[i] = flat[i] * a + b


@njit(parallel=True, cache=False)
def in_plane_all(raw, slopes, intercepts, yi0, yi1, yw, xi0, xi1, xw, parts):
    """The in-plane resampling (y, x, rescale) of every input slice, as the passes do it,
    into one thread-local plane: the share of a pass that does not depend on the output."""
    nz = raw.shape[0]
    for c in prange(parts):
        tmp = np.empty((cpu.ROWS, raw.shape[2]), dtype=np.float32)
        plane = np.empty((yi0.shape[0], xi0.shape[0]), dtype=np.float32)
        for z in range(c * nz // parts, (c + 1) * nz // parts):
            cpu._slice_plane(raw, z, slopes[z], intercepts[z], yi0, yi1, yw, xi0, xi1, xw, tmp, plane)


def huge_mapping(shape: tuple[int, ...]) -> tuple[mmap.mmap, np.ndarray]:
    """An anonymous mapping, 2 MiB-aligned, with MADV_HUGEPAGE; nothing touched yet."""
    nbytes = int(np.prod(shape)) * 4
    # Private: a shared anonymous mapping is shmem, which gets no transparent huge pages.
    mm = mmap.mmap(-1, nbytes + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    offset = (-base) % HUGE
    arr = np.frombuffer(mm, dtype=np.float32, count=nbytes // 4, offset=offset).reshape(shape)
    if _libc.madvise(ctypes.c_void_p(base + offset), ctypes.c_size_t(nbytes), MADV_HUGEPAGE) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_HUGEPAGE)")
    return mm, arr


def populate(arr: np.ndarray) -> None:
    """Fault in (and have the kernel zero) every page of ``arr`` (ctypes: the GIL is dropped)."""
    if _libc.madvise(ctypes.c_void_p(arr.ctypes.data), ctypes.c_size_t(arr.nbytes), MADV_POPULATE_WRITE) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_POPULATE_WRITE)")


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="Numba threads (default: all)")
    args = ap.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
    raw = bp.chest_phantom(bp.volume_shape(False))
    nz = raw.shape[0]
    tables = grid_tables(raw.shape, bp.SPACING_ZYX, bp.TARGET_ZYX)
    recipe = bp.params()
    clip_lo, clip_hi, shift, scale = recipe.clip_scale()

    def backend() -> cpu.CpuBackend:
        return cpu.CpuBackend(raw, np.full(nz, bp.SLOPE), np.full(nz, bp.INTERCEPT), tables)

    be = backend()
    st = be.stats((clip_lo, clip_hi), shift, scale, recipe.foreground_threshold, 0.5, False)
    assert st.bbox is not None
    shape = pipeline.output_shape_of(st.bbox, tables.shape)
    inv = 1.0 / st.std
    written = np.empty(shape, dtype=np.float32)
    written.fill(0.0)

    def normalize(out: np.ndarray | None) -> None:
        be.normalize(st.bbox, (clip_lo, clip_hi), shift, scale, st.mean, inv, out=out)

    def fresh_mmap_fill() -> None:
        mm, arr = huge_mapping(shape)
        fill(arr, np.float32(1.0))
        del arr
        mm.close()

    def populate_fill() -> None:
        mm, arr = huge_mapping(shape)
        populate(arr)
        fill(arr, np.float32(1.0))
        del arr
        mm.close()

    def recipe_fresh() -> None:
        pipeline.run_recipe(backend(), recipe, tables.shape)

    def recipe_overlap() -> None:
        mm, arr = huge_mapping(shape)
        t = threading.Thread(target=populate, args=(arr,))
        t.start()
        b = backend()
        s = b.stats((clip_lo, clip_hi), shift, scale, recipe.foreground_threshold, 0.5, False)
        t.join()
        b.normalize(s.bbox, (clip_lo, clip_hi), shift, scale, s.mean, 1.0 / s.std, out=arr)
        del arr
        mm.close()

    full = be._tables((0, tables.shape[0], 0, tables.shape[1], 0, tables.shape[2]))[3:]
    crop = be._tables(st.bbox)[3:]
    nparts = 4 * numba.get_num_threads()
    slopes, intercepts = be.slopes, be.intercepts
    parts: dict[str, Callable[[], object]] = {
        "read input": lambda: read_all(raw),
        "in-plane, full grid": lambda: in_plane_all(raw, slopes, intercepts, *full, nparts),  # type: ignore[call-arg]
        "in-plane, crop": lambda: in_plane_all(raw, slopes, intercepts, *crop, nparts),  # type: ignore[call-arg]
        "stats pass": lambda: be.stats(
            (clip_lo, clip_hi), shift, scale, recipe.foreground_threshold, 0.5, False
        ),
        "normalize reused": lambda: normalize(written),
        "normalize fresh": lambda: normalize(None),
        "fill written": lambda: fill(written, np.float32(1.0)),
        "fill fresh": lambda: fill(np.empty(shape, dtype=np.float32), np.float32(1.0)),
        "fill fresh mmap+hugepage": fresh_mmap_fill,
        "fill after populate": populate_fill,
        "z-score in place": lambda: affine_in_place(written, np.float32(0.5), np.float32(-0.25)),
        "recipe fresh": recipe_fresh,
        "recipe populate overlap": recipe_overlap,
    }
    for fn in parts.values():  # compile and warm
        fn()
    wall: dict[str, list[float]] = {k: [] for k in parts}
    cpu_s: dict[str, list[float]] = {k: [] for k in parts}
    load = [os.getloadavg()[0]]
    for rnd in range(args.rounds):
        order = list(parts.items())
        for name, fn in order if rnd % 2 == 0 else order[::-1]:
            w, c = timed(fn)
            wall[name].append(w)
            cpu_s[name].append(c)
        load.append(os.getloadavg()[0])
    rates = bp.copy_rates()
    bw = max(rates.values())
    out_bytes = int(np.prod(shape)) * 4
    bound = (raw.nbytes + out_bytes) / bw
    print(
        f"volume {raw.shape} -> grid {tables.shape}, crop {shape}; {numba.get_num_threads()} threads; "
        f"{args.rounds} rounds; load average {min(load):.1f}-{max(load):.1f}"
    )
    print(
        f"bound {bound * 1e3:.1f} ms: {(raw.nbytes + out_bytes) / 2**20:.0f} MiB at {bw / 1e9:.1f} GB/s "
        f"(copy: one thread {rates['single'] / 1e9:.1f}, {numba.get_num_threads()} threads "
        f"{rates['parallel'] / 1e9:.1f} GB/s)"
    )
    print(
        f"{'part':<26} {'wall min':>9} {'wall med':>9} {'CPU min':>9} {'CPU med':>9}  (ms)"
        "  x bound (med wall)"
    )
    for name in parts:
        ws, cs = wall[name], cpu_s[name]
        print(
            f"{name:<26} {min(ws) * 1e3:9.1f} {statistics.median(ws) * 1e3:9.1f} "
            f"{min(cs) * 1e3:9.1f} {statistics.median(cs) * 1e3:9.1f}"
            f"        {statistics.median(ws) / bound:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
