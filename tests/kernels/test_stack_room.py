"""with_stack_room: a loop whose calls straddle the end of a CPython frame-stack chunk maps and
faults in memory on every call; run with room it does not (tre.kernels.stack_room)."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest

from tre.kernels.stack_room import with_stack_room

CALLS = 300


def _leaf(x: int) -> int:
    return x + 1


def _calls() -> int:
    """Page faults taken by `CALLS` calls of a small function from here."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    total = 0
    for i in range(CALLS):
        total += _leaf(i)
    assert total == CALLS * (CALLS + 1) // 2
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _at_depth(depth: int, fn: Callable[[], int]) -> int:
    return fn() if depth == 0 else _at_depth(depth - 1, fn)


def test_room_stops_the_chunk_thrash_at_every_depth() -> None:
    # Without room, at some depth (below 2 chunks' worth of these small frames) the calls
    # straddle a chunk's end: a fresh chunk is mapped and faulted in on every call.
    plain, roomy = [], []
    for depth in range(400):  # a loop, not a comprehension: that would add a frame
        plain.append(_at_depth(depth, _calls))
        roomy.append(_at_depth(depth, lambda: with_stack_room(_calls)))
    assert max(plain) >= CALLS // 2  # the thrash this module is about is real here
    assert max(roomy) < CALLS // 10  # with room, at no depth


def test_results_arguments_and_exceptions_pass_through() -> None:
    assert with_stack_room(divmod, 17, 5) == (3, 2)
    assert with_stack_room(dict, a=1) == {"a": 1}
    with pytest.raises(ZeroDivisionError):
        with_stack_room(divmod, 1, 0)
