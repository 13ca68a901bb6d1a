"""The kernel tests wait for the kernels scripts/test compiles ahead (`tre.kernels.warm`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

WARM_WAIT_S = 900


@pytest.fixture(scope="session", autouse=True)
def kernels_compiled_ahead() -> None:
    """With the whole suite (scripts/test sets TRE_TEST_KERNELS_WARMED), wait until the
    kernels are in the Numba cache: a worker that compiled them alongside would pay for them
    twice. The file appears when the compilation ends, failed or not (a failure leaves
    the tests to compile and say what is wrong); a targeted run does not wait."""
    done = os.environ.get("TRE_TEST_KERNELS_WARMED")
    if not done:
        return
    deadline = time.monotonic() + WARM_WAIT_S
    while not Path(done).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
