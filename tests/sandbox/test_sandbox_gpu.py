"""GPU pass-through of the local sandbox: only the NVIDIA device nodes are added to the
sandbox's /dev; the user-space driver comes from the read-only host /usr."""

from __future__ import annotations

import glob
import importlib.util
import textwrap

import pytest

from tests.sandbox.conftest import Sandbox
from tre.executors.base import ExecutorError

HAS_GPU = bool(glob.glob("/dev/nvidia[0-9]*"))


@pytest.mark.skipif(HAS_GPU, reason="this host has a GPU; the refusal is for GPU-less hosts")
def test_gpu_job_on_a_host_without_gpus_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ExecutorError, match="asks for 1 GPU"):
        sandbox.run("print(1)", gpu=1)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU (/dev/nvidia0)")
def test_gpu_is_usable_inside_the_sandbox(sandbox: Sandbox) -> None:
    if importlib.util.find_spec("torch") is not None:
        probe = """
            import torch
            x = torch.arange(16.0, device='cuda').reshape(4, 4)
            print('RESULT', float((x @ x).sum()))
        """
        expected = "RESULT 3920.0"  # sum(A @ A) for A = arange(16).reshape(4, 4)
    elif importlib.util.find_spec("numba") is not None:
        probe = """
            import numpy as np
            from numba import cuda
            @cuda.jit
            def double(a):
                i = cuda.grid(1)
                if i < a.size:
                    a[i] *= 2
            a = cuda.to_device(np.arange(8.0))
            double[1, 8](a)
            print('RESULT', float(a.copy_to_host().sum()))
        """
        expected = "RESULT 56.0"
    else:
        pytest.skip("neither torch nor numba is installed to exercise the GPU")
    run = sandbox.run(textwrap.dedent(probe), gpu=1, memory_mb=8192, max_processes=512, time_limit_s=120)
    assert run.result.state == "succeeded", run.log
    assert expected in run.log
    # Without gpu the same sandbox sees no NVIDIA device at all.
    plain = sandbox.run("import glob; print('DEVICES', glob.glob('/dev/nvidia*'))")
    assert "DEVICES []" in plain.log
