"""CUDA kernels, tested on the CPU through Numba's CUDA simulator in a child process.

NUMBA_ENABLE_CUDASIM must be set before numba.cuda is first imported, and this process
has already imported Numba for the CPU kernels, hence the subprocess. On a machine with a
GPU the same cases run for real via ``benchmarks/gpu_check.sh`` (marker ``gpu`` below).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CASES = "tests/kernels/cuda_cases.py"


def _pytest(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", CASES]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_cuda_kernels_under_simulator() -> None:
    pytest.importorskip("numba.cuda")
    proc = _pytest({"NUMBA_ENABLE_CUDASIM": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


@pytest.mark.gpu
def test_cuda_kernels_on_gpu() -> None:
    cuda = pytest.importorskip("numba.cuda")
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not cuda.is_available():
        pytest.skip("no CUDA device here")
    proc = _pytest({"NUMBA_ENABLE_CUDASIM": "0"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
