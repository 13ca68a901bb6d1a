"""Load the compiled kernels (the Numba cache) on a thread, from the job's first moment.

Why: importing Numba and loading the cached kernels costs ~0.65 s of CPU (0.2 s import,
0.4 s cache load on the dev machine), most of it holding the GIL. Started after discovery
it was on the critical path (the first series' pixels were ready before the kernels); started
before the job imports pydicom and walks the input, it runs while those wait on the disk and
is done by the time the first series is loaded. This module imports only what the kernels
need (NumPy), so the job can start it before its own heavier imports.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor

from tre.kernels.params import PreprocessParams
from tre.kernels.stack_room import with_stack_room
from tre.kernels.timeline import DISABLED, Timeline


def warm_kernels(params: PreprocessParams, device: str, dtype: str = "int16") -> None:
    """Run the recipe's kernels once on a tiny volume of ``dtype`` (one of the kernels' pixel
    types, `tre.kernels.pipeline.KERNEL_DTYPES`; Numba compiles per type), which compiles
    them or loads them from the cache."""
    import numpy as np

    from tre.kernels.pipeline import preprocess_array

    raw = np.zeros((3, 4, 4), dtype=np.dtype(dtype))
    raw[1, 1:3, 1:3] = 2000
    one = np.ones(3)
    zero = np.full(3, -1024.0)
    preprocess_array(
        raw,
        one,
        zero,
        (2.0, 1.0, 1.0),
        dataclasses.replace(params, spacing=(1.0, 1.0, 1.0)),
        "cuda" if device == "cuda" else "cpu",
    )


def start_warm(params: PreprocessParams, device: str, timeline: Timeline = DISABLED) -> Future[None]:
    """`warm_kernels` on its own thread; the future's result is never needed for correctness
    (the first real call loads whatever is missing and reports any failure)."""

    def work() -> None:
        with timeline.span("warm"):
            with_stack_room(warm_kernels, params, device)  # tre.kernels.stack_room

    pool = ThreadPoolExecutor(1, thread_name_prefix="warm")
    try:
        return pool.submit(work)
    finally:
        pool.shutdown(wait=False)


# The recipes whose kernels differ: window only, percentile clip, and the int16 output's
# normalize pass (`tre.kernels.quantise`); the values do not matter, Numba compiles per type.
# Also what the job image's baked cache holds (`tre.kernels.numba_seed`).
WINDOW_ONLY = PreprocessParams((1.0, 1.0, 1.0), (-1000.0, 400.0))
PERCENTILE_CLIP = PreprocessParams((1.0, 1.0, 1.0), (-1000.0, 400.0), (0.5, 99.5))
INT16_OUTPUT = PreprocessParams((1.0, 1.0, 1.0), (-1000.0, 400.0), output_dtype="int16")
DISTINCT_RECIPES = (WINDOW_ONLY, PERCENTILE_CLIP, INT16_OUTPUT)


def main(argv: list[str] | None = None) -> int:
    """``python -m tre.kernels.warm [DTYPE ...]``: compile every recipe's CPU kernels for each
    pixel type (default all of `tre.kernels.pipeline.KERNEL_DTYPES`) into ``$NUMBA_CACHE_DIR``,
    so that later processes on this host load them (~1 s) instead of compiling (~130 CPU-s
    for all three types). scripts/test runs it before the suite; it is not needed otherwise."""
    import sys

    from tre.kernels.pipeline import KERNEL_DTYPES

    known = [d.name for d in KERNEL_DTYPES]
    dtypes = (sys.argv[1:] if argv is None else argv) or known
    unknown = [d for d in dtypes if d not in known]
    if unknown:
        print(f"error: unknown pixel type {unknown[0]!r}; use {', '.join(known)}", file=sys.stderr)
        return 2
    for dtype in dtypes:
        for recipe in DISTINCT_RECIPES:
            with_stack_room(warm_kernels, recipe, "cpu", dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
