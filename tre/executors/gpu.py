"""What a GPU job needs from the host: NVIDIA device nodes and the user-space driver.

An imported image carries CUDA libraries but never the driver, whose user-space half
(``libcuda``, ``libnvidia-ml``, ``nvidia-smi`` ...) must match the host's kernel module
exactly. Like the NVIDIA container toolkit, the sandbox finds those files on the host (the
dynamic loader's cache, ``ldconfig -p``, for libraries; ``PATH`` for the tools) and binds
them read-only into the job under `SANDBOX_LIB` / `SANDBOX_BIN`, which are added to
``LD_LIBRARY_PATH`` / ``PATH``. Only files of the driver are bound, never the host's CUDA
toolkit: the image brings its own.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tre import plural
from tre.executors.base import ExecutorError

# A top-level folder of the sandbox, made by bwrap on its tmpfs root (images cannot hold it:
# `tre.executors.bwrap` skips a top-level entry of that name).
SANDBOX_DIR = "/tre-nvidia"
SANDBOX_LIB = f"{SANDBOX_DIR}/lib"
SANDBOX_BIN = f"{SANDBOX_DIR}/bin"

# Driver libraries (by name before ".so"), after the NVIDIA container toolkit's list.
DRIVER_LIBRARIES = frozenset(
    {
        "libcuda",
        "libcudadebugger",
        "libnvidia-ml",
        "libnvidia-ptxjitcompiler",
        "libnvidia-fatbinaryloader",
        "libnvidia-nvvm",
        "libnvidia-gpucomp",
        "libnvidia-allocator",
        "libnvidia-cfg",
        "libnvidia-opencl",
        "libnvidia-compiler",
        "libnvidia-pkcs11",
        "libnvidia-pkcs11-openssl3",
    }
)
DRIVER_TOOLS = ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced")
CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
# ldconfig's tag for libraries of this machine's ABI.
_LDCONFIG_ABI = {"x86_64": "x86-64", "aarch64": "AArch64"}
_LDCONFIG_LINE = re.compile(r"^\s*(?P<name>\S+) \((?P<tags>[^)]*)\) => (?P<path>/\S+)$")


@dataclass
class GpuMounts:
    """Device nodes (bound with device access) and (host file, sandbox path) read-only binds."""

    devices: list[str] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def env_paths(self) -> dict[str, str]:
        """Folders to add to LD_LIBRARY_PATH / PATH (empty when nothing is bound there)."""
        out: dict[str, str] = {}
        if any(dest.startswith(SANDBOX_LIB + "/") for _src, dest in self.files):
            out["LD_LIBRARY_PATH"] = SANDBOX_LIB
        if any(dest.startswith(SANDBOX_BIN + "/") for _src, dest in self.files):
            out["PATH"] = SANDBOX_BIN
        return out


def nvidia_devices(count: int, dev: Path = Path("/dev")) -> list[str]:
    """Device nodes for ``count`` NVIDIA GPUs (the first ones) plus the driver's control nodes."""
    if count <= 0:
        return []
    gpus = sorted(
        (p for p in dev.glob("nvidia[0-9]*") if p.name[len("nvidia") :].isdigit()),
        key=lambda p: int(p.name[len("nvidia") :]),
    )
    if len(gpus) < count:
        raise ExecutorError(f"the job asks for {plural.count(count, 'GPU')} but this host has {len(gpus)}")
    control = [dev / n for n in CONTROL_NODES]
    return [str(p) for p in [*gpus[:count], *control] if p.exists()]


def ldconfig_listing() -> str:
    """``ldconfig -p`` of the host ("" when ldconfig is missing)."""
    exe = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    if exe is None:
        return ""
    done = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10, check=False)
    return done.stdout


def driver_libraries(listing: str, machine: str | None = None) -> list[tuple[Path, str]]:
    """(host file, sandbox path) for each driver library name in an ``ldconfig -p`` listing.

    Every name the loader knows (``libcuda.so.1`` and ``libcuda.so``) gets its own bind of the
    real file, so that both ``dlopen`` spellings work. Libraries of another ABI are skipped.
    """
    abi = _LDCONFIG_ABI.get(machine or platform.machine(), "")
    out: dict[str, Path] = {}
    for line in listing.splitlines():
        match = _LDCONFIG_LINE.match(line)
        if match is None or (abi and abi not in match["tags"]):
            continue
        name = match["name"]
        if name.split(".so", 1)[0] not in DRIVER_LIBRARIES or "/" in name or name in out:
            continue
        real = Path(os.path.realpath(match["path"]))
        if real.is_file():
            out[name] = real
    return [(path, f"{SANDBOX_LIB}/{name}") for name, path in sorted(out.items())]


def driver_tools(which: Callable[[str], str | None] = shutil.which) -> list[tuple[Path, str]]:
    """(host file, sandbox path) for the driver's command-line tools found on the host."""
    found = []
    for tool in DRIVER_TOOLS:
        path = which(tool)
        if path:
            found.append((Path(os.path.realpath(path)), f"{SANDBOX_BIN}/{tool}"))
    return found


def gpu_mounts(
    count: int,
    dev: Path = Path("/dev"),
    listing: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
    machine: str | None = None,
) -> GpuMounts:
    """Everything to bind for a job with ``count`` GPUs (nothing for a CPU job)."""
    if count <= 0:
        return GpuMounts()
    devices = nvidia_devices(count, dev)
    files = driver_libraries(ldconfig_listing() if listing is None else listing, machine)
    return GpuMounts(devices, files + driver_tools(which))
