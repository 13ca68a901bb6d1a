"""The cohort's decode pool runs the earliest series' slices first (`tre.kernels.priority_pool`)."""

from __future__ import annotations

import threading

import pytest

from tre.kernels.priority_pool import PriorityThreadPool


def test_earlier_lane_runs_first_and_fifo_within_a_lane() -> None:
    pool = PriorityThreadPool(1)
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = pool.submit(0, gate.wait)  # occupies the only thread while the queue fills
        later, first = pool.lane(5), pool.lane(1)
        futs = [later.submit(order.append, name) for name in ("n+1 a", "n+1 b")]
        futs += [first.submit(order.append, name) for name in ("n a", "n b")]
        gate.set()
        blocker.result(timeout=30)
        for f in futs:
            f.result(timeout=30)
    finally:
        pool.shutdown()
    assert order == ["n a", "n b", "n+1 a", "n+1 b"]


def test_map_returns_results_in_order_and_raises_the_task_error() -> None:
    pool = PriorityThreadPool(3)
    try:
        lane = pool.lane(0)
        assert list(lane.map(lambda v: v * v, range(20))) == [v * v for v in range(20)]

        def boom(v: int) -> int:
            if v == 7:
                raise ValueError("slice 7")
            return v

        with pytest.raises(ValueError, match="slice 7"):
            list(lane.map(boom, range(10)))
    finally:
        pool.shutdown()


def test_shutdown_cancels_queued_tasks_and_refuses_new_ones() -> None:
    pool = PriorityThreadPool(1)
    gate, started = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait()

    running = pool.submit(0, hold)
    assert started.wait(timeout=30)  # the only thread is busy: what follows stays queued
    queued = pool.submit(0, lambda: "never")
    stopper = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    while not queued.cancelled() and stopper.is_alive():
        stopper.join(0.01)
    gate.set()
    stopper.join(timeout=30)
    assert running.result(timeout=30) is True
    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(0, print)
