"""Run a thread's hot loop where CPython's frame stack does not map and unmap memory per call.

Why: CPython 3.11+ keeps a thread's Python frames in "data stack chunks" of 16 KiB. A call
that does not fit in the current chunk gets a new chunk from ``mmap``, and when that call
returns the chunk is ``munmap``'d again; a loop whose calls straddle a chunk's end therefore
maps, zero-fills (page faults) and unmaps memory on every call. Where that end falls depends
only on how deep the loop runs: in the cohort job, header parsing and the decode threads ran
at such depths (the main thread mapped ~6 chunks a file; a `perf` page-fault profile put half
of the job's 298,000 page faults in ``_PyThreadState_BumpFramePointerSlow``), and parsing
60 headers at the worst depth took 1.15 ms a file instead of 0.45 (issue 13, tenth round).

`with_stack_room` calls a function from a frame too large for any 16 KiB chunk, so CPython
gives that frame a chunk of its own with `ROOM_SLOTS` words to spare, kept for as long as the
function runs: everything the function calls fits in it, and no chunk is mapped again until
it returns. Nothing else changes (same thread, same results, same exceptions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# Words (8 bytes) of local variables in the roomy frame: 32 KiB. CPython sizes the new chunk
# to the next power of two that holds the frame (64 KiB), leaving ~32 KiB for the frames the
# function calls: about twice a default chunk, far more than the job's deepest call chains.
ROOM_SLOTS = 4096


def _make_roomy() -> Callable[..., object]:
    """A function with `ROOM_SLOTS` local variables that calls ``fn(*args, **kwargs)``.

    Generated because Python has no other way to ask for a large frame; the locals are
    never assigned at run time (the branch that names them is never taken), they only make
    the frame that large."""
    names = " = ".join(f"_{i}" for i in range(ROOM_SLOTS))
    source = (
        "def roomy(fn, args, kwargs):\n"
        "    if fn is None:\n"
        f"        {names} = None\n"
        "    return fn(*args, **kwargs)\n"
    )
    scope: dict[str, object] = {}
    exec(compile(source, "<tre.kernels.stack_room>", "exec"), scope)  # noqa: S102 - fixed source above
    roomy = scope["roomy"]
    assert callable(roomy)  # noqa: S101 - defined by the source above
    return roomy


_ROOMY = _make_roomy()


def with_stack_room(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)``, its calls in a frame-stack chunk of their own (module doc)."""
    return _ROOMY(fn, args, kwargs)  # type: ignore[return-value]
