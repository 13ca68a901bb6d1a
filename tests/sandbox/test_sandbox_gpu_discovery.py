"""GPU pass-through logic against a fake /dev and a fake driver tree (no GPU needed): which
device nodes, which driver libraries and tools, where they appear in the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from tre.executors.base import ExecutorError, JobSpec
from tre.executors.bwrap import SandboxLayout, build_args
from tre.executors.gpu import SANDBOX_BIN, SANDBOX_LIB, driver_libraries, gpu_mounts


def fake_driver(tmp_path: Path) -> tuple[Path, str]:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-modeset", "null"):
        (dev / name).touch()
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libcuda.so.550.54").write_bytes(b"cuda")
    (lib / "libcuda.so.1").symlink_to("libcuda.so.550.54")
    (lib / "libnvidia-ml.so.550.54").write_bytes(b"nvml")
    (lib / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.550.54")
    (lib / "libcudart.so.12").write_bytes(b"toolkit, not driver")
    (lib / "libc.so.6").write_bytes(b"libc")
    lib32 = tmp_path / "lib32"
    lib32.mkdir()
    (lib32 / "libcuda.so.1").write_bytes(b"32-bit")
    listing = "\n".join(
        [
            "5 libs found in cache `/etc/ld.so.cache'",
            f"\tlibnvidia-ml.so.1 (libc6,x86-64) => {lib}/libnvidia-ml.so.1",
            f"\tlibcudart.so.12 (libc6,x86-64) => {lib}/libcudart.so.12",
            f"\tlibcuda.so.1 (libc6,x86-64) => {lib}/libcuda.so.1",
            f"\tlibcuda.so.1 (libc6) => {lib32}/libcuda.so.1",
            f"\tlibcuda.so (libc6,x86-64) => {lib}/libcuda.so.1",
            f"\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => {lib}/libc.so.6",
            "\tlibgone.so.1 (libc6,x86-64) => /nonexistent/libcuda.so.1",
        ]
    )
    return dev, listing


def test_driver_libraries_from_the_loader_cache(tmp_path: Path) -> None:
    _dev, listing = fake_driver(tmp_path)
    libs = driver_libraries(listing, "x86_64")
    lib = tmp_path / "lib"
    assert libs == [
        (lib / "libcuda.so.550.54", f"{SANDBOX_LIB}/libcuda.so"),
        (lib / "libcuda.so.550.54", f"{SANDBOX_LIB}/libcuda.so.1"),
        (lib / "libnvidia-ml.so.550.54", f"{SANDBOX_LIB}/libnvidia-ml.so.1"),
    ]  # the CUDA toolkit, libc and 32-bit copies are not the driver's


def test_gpu_mounts_for_a_gpu_job(tmp_path: Path) -> None:
    dev, listing = fake_driver(tmp_path)
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_bytes(b"smi")
    tools = {"nvidia-smi": str(smi)}
    mounts = gpu_mounts(1, dev, listing, tools.get, "x86_64")
    assert mounts.devices == [str(dev / n) for n in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-modeset")]
    assert (smi, f"{SANDBOX_BIN}/nvidia-smi") in mounts.files
    assert mounts.env_paths == {"LD_LIBRARY_PATH": SANDBOX_LIB, "PATH": SANDBOX_BIN}
    assert gpu_mounts(0, dev, listing, tools.get, "x86_64").devices == []
    with pytest.raises(ExecutorError, match="asks for 3 GPU"):
        gpu_mounts(3, dev, listing, tools.get, "x86_64")

    # In the bwrap command line: devices with device access, driver files read-only, and the
    # folders prepended to what the image's Env says.
    spec = JobSpec("j", "p", "img", ["nvidia-smi"], [], tmp_path / "out", tmp_path / "log", gpu=1)
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr").mkdir(parents=True)
    from tre.executors.base import ImageConfig

    layout = SandboxLayout(
        uid=10001,
        gid=10001,
        tmp_size_bytes=2**20,
        rootfs=rootfs,
        gpu=mounts,
        image_config=ImageConfig(env={"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"}),
    )
    args = build_args(spec, layout)
    joined = " ".join(args)
    assert f"--dev-bind {dev}/nvidia0 {dev}/nvidia0" in joined
    assert f"--ro-bind {tmp_path}/lib/libcuda.so.550.54 {SANDBOX_LIB}/libcuda.so.1" in joined
    assert f"--setenv LD_LIBRARY_PATH {SANDBOX_LIB}:/opt/lib" in joined
    assert f"--setenv PATH {SANDBOX_BIN}:/usr/bin" in joined
