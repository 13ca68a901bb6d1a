"""GPU pass-through of the local sandbox on a real GPU (skipped without one): the NVIDIA
device nodes and the host's driver libraries and tools reach the job, in the host-toolchain
mode and in an image root file system that has no driver of its own.
(The discovery logic is tested without a GPU in test_sandbox_gpu_discovery.py.)"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tre.executors.base import ExecutorError, ImageConfig
from tre.executors.local import LocalExecutor

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


def glibc_rootfs(root: Path) -> Path:
    """An image with a shell and the host's C library only (no CUDA, no NVIDIA driver)."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    ldd = subprocess.run(["ldd", "/bin/ls"], capture_output=True, text=True).stdout
    for path in [p for p in ldd.split() if p.startswith("/")]:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dest)
    return root


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU (/dev/nvidia0)")
@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")
def test_nvidia_smi_runs_inside_an_image_without_a_driver(sandbox: Sandbox, tmp_path: Path) -> None:
    rootfs = glibc_rootfs(tmp_path / "rootfs")
    run = sandbox.run(
        "",
        command=["sh", "-c", "ls /tre-nvidia/lib; nvidia-smi -L"],
        rootfs=rootfs,
        image_config=ImageConfig(env={"PATH": "/bin"}),
        gpu=1,
        executor=LocalExecutor(),
    )
    assert run.result.state == "succeeded", run.log
    assert "libcuda.so.1" in run.log
    assert "GPU 0:" in run.log
