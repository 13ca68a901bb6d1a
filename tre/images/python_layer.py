"""The Python packages of the CPU job image: what the job runs, pinned to what was tested.

Why not Debian's packages: the job image's Debian release ships pydicom 2.3, Numba 0.56 and
no imagecodecs, while the cohort job needs pydicom 3 (``pydicom.pixels``) and the decoders
this host's tests ran with; with Debian's set, ``tre preprocess`` failed inside the image.
So the image gets the same distributions, at the same versions, as this host's environment
(the ``kernels`` extra of pyproject.toml, plus Pillow for the demo job), installed as wheels
for the image's Python by pip (``--target``, binary wheels only, no dependency resolution of
its own: the full list is worked out here from the installed distributions' metadata).
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tre.images.errors import ImageToolError

# What the job imports: the kernels' extra (CPU only) and Pillow for the demo job.
TOP_LEVEL = (
    "numpy",
    "numba",
    "pydicom",
    "nibabel",
    "isal",
    "imagecodecs",
    "pylibjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-rle",
    "pyjpegls",
    "zarr",
    "pillow",
)
# Modules the job may import that the CPU image leaves out on purpose, and why.
LEFT_OUT = {
    "numba_cuda": "the GPU kernels (--device cuda) run in the CUDA image",
    "zlib_ng": "the .nii.gz writer's fallback when isal is missing; isal is in the image",
}
# Debian bookworm's python3 (the image's SUITE) and its C library (glibc 2.36).
PYTHON_VERSION = (3, 11)
GLIBC = (2, 36)


def target_environment() -> dict[str, str]:
    """The marker environment of the image's interpreter (for dependency markers)."""
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    major, minor = PYTHON_VERSION
    env.update(
        python_version=f"{major}.{minor}",
        python_full_version=f"{major}.{minor}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        os_name="posix",
        platform_system="Linux",
        platform_machine=platform.machine(),
    )
    return env


def requirements(top_level: Iterable[str] = TOP_LEVEL) -> list[str]:
    """``name==version`` for every distribution ``top_level`` needs (requirement strings, extras
    allowed: ``psycopg[binary]``), closed over dependencies, each pinned to the version
    installed here (a dependency not installed here is left unpinned). The job image asks for
    `TOP_LEVEL`; the control-plane image (`tre.images.controlimage`) for tre's own dependencies."""
    env = target_environment()
    wanted: dict[str, str | None] = {}
    done: set[tuple[str, str]] = set()
    queue = [Requirement(spec) for spec in top_level]
    while queue:
        req = queue.pop()
        name = canonicalize_name(req.name)
        extras = sorted(req.extras) or [""]
        todo = [e for e in extras if (name, e) not in done]
        if not todo:
            continue
        done.update((name, e) for e in todo)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            wanted[name] = None
            continue
        wanted[name] = dist.version
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({**env, "extra": e}) for e in todo):
                queue.append(dep)
    return sorted(f"{n}=={v}" if v else n for n, v in wanted.items())


def _platforms() -> list[str]:
    arch = platform.machine()
    tags = [f"manylinux_2_{m}_{arch}" for m in range(GLIBC[1], 4, -1)]
    legacy = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
    return tags + [f"{name}_{arch}" for name in legacy]


def install(target: Path, reqs: list[str], timeout_s: float = 1800) -> None:
    """pip-install ``reqs`` as wheels for the image's Python into ``target``."""
    major, minor = PYTHON_VERSION
    args = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    args += ["--no-deps", "--only-binary=:all:", "--no-compile", "--target", str(target)]
    args += ["--python-version", f"{major}.{minor}", "--implementation", "cp", "--abi", f"cp{major}{minor}"]
    for tag in _platforms():
        args += ["--platform", tag]
    try:
        proc = subprocess.run([*args, *reqs], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ImageToolError(f"pip did not finish installing within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()] or [f"exit status {proc.returncode}"]
        raise ImageToolError(f"pip could not install the job image's packages: {lines[-1][:300]}")


def write_layer(dest: Path, site: str, reqs: list[str]) -> None:
    """A layer holding ``reqs`` under ``/site``: root-owned, no write bits, fixed timestamps,
    without pip's console scripts (their first line names this host's interpreter)."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "site"
        install(target, reqs)
        with tarfile.open(dest, "w") as tar:
            parts = site.split("/")
            for i in range(1, len(parts) + 1):
                _add_dir(tar, "/".join(parts[:i]))
            for path in sorted(target.rglob("*")):
                rel = path.relative_to(target)
                if rel.parts[0] == "bin" or "__pycache__" in rel.parts or path.is_symlink():
                    continue
                name = f"{site}/{rel.as_posix()}"
                if path.is_dir():
                    _add_dir(tar, name)
                else:
                    data = path.read_bytes()
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)
