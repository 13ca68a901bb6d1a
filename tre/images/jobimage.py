"""The platform's CPU job image, built on this machine without Docker or a registry.

Four layers: a Debian root filesystem with only its Python (`mmdebstrap`, through this
machine's apt sources); the job's Python packages as wheels, pinned to the versions this
host's environment runs (`tre.images.python_layer`: pydicom 3, Numba, the DICOM decoders);
the `tre.kernels` package and the demo job at ``/opt/tre/python``; and the kernels compiled
inside the image (`tre.kernels.numba_seed`), which each job copies into its empty Numba cache
instead of compiling. Packed as an OCI image by umoci with the runtime config of
`sandbox_images/Dockerfile.cpu` (uid 10001, HOME=/tmp, NUMBA_CACHE_DIR under /tmp), then
imported into the image store like any researcher's image (same verification, same unpacking).

Cached by the hash of its recipe (Debian suite and packages, the pinned Python packages, the
tre files it carries, the config): a second build with an unchanged recipe returns the stored
reference at once. `ensure_cpu_job_image` is what `tre demo` / `tre preprocess` call;
`smoke_test` runs the kernels and the demo job inside the built root filesystem under
bubblewrap.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from tre.config import Settings
from tre.images import python_layer
from tre.images.errors import ImageToolError
from tre.images.reference import canonical, parse_reference
from tre.images.store import ImageStore
from tre.images.tools import run_tool

NAME = "tre-job-cpu"
SUITE = "bookworm"
# Only the interpreter from Debian: its numpy/pydicom/numba are too old for the job (pydicom
# 2.3 has no ``pydicom.pixels``); the Python packages come as pinned wheels (python_layer).
# libstdc++6: the C++ runtime that manylinux wheels (llvmlite, imagecodecs) may link against.
PACKAGES = ("python3", "libstdc++6")
# Documentation, manuals and translations are not needed to run jobs (copyright files stay).
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# No device nodes in the image's /dev (the sandbox provides /dev; the importer refuses them).
MMDEBSTRAP_OPTIONS = ("--skip=output/dev",)
SITE = "opt/tre/python"
JOB_TMP = "/tmp"  # noqa: S108 - the job's private tmpfs inside the sandbox, not the host's /tmp
ENV = {
    "PYTHONPATH": "/" + SITE,
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "HOME": JOB_TMP,
    "NUMBA_CACHE_DIR": f"{JOB_TMP}/numba-cache",
    "TRE_NUMBA_CACHE_SEED": "/opt/tre/numba-cache",  # compiled kernels, copied at start-up
    "MPLCONFIGDIR": f"{JOB_TMP}/matplotlib",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}
USER = "10001:10001"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
TRE_ROOT = Path(__file__).resolve().parent.parent


def tre_files() -> list[Path]:
    """The parts of `tre` a job needs: the package marker, the kernels, the demo job."""
    files = [TRE_ROOT / "__init__.py", TRE_ROOT / "demo_job.py"]
    files += sorted(p for p in (TRE_ROOT / "kernels").rglob("*.py"))
    return files


def recipe(settings: Settings) -> dict[str, object]:
    """The whole image: the Debian layer's recipe, the tre files it carries, the config."""
    return {
        **base_recipe(),
        "python_packages": python_layer.requirements(),
        "numba_seed": 1,  # a fourth layer: the kernels compiled in the image (_write_seed_layer)
        "variant": "essential",
        "env": ENV,
        "user": USER,
        "files": {
            p.relative_to(TRE_ROOT.parent).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in tre_files()
        },
    }


def recipe_hash(settings: Settings) -> str:
    return hashlib.sha256(json.dumps(recipe(settings), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class BuildResult:
    reference: str
    digest: str
    cached: bool
    seconds: float
    unpacked_size: int


def _cache_file(settings: Settings, key: str) -> Path:
    return settings.images_dir / "jobimage" / f"{key}.json"


def build_cpu_job_image(
    settings: Settings, engine: Engine | None = None, actor: str = "system"
) -> BuildResult:
    """Build (or find in the cache) the CPU job image; record it in the image catalog."""
    import time

    from tre import audit
    from tre.images import catalog
    from tre.store.db import init_db, make_engine, session_scope

    started = time.monotonic()
    store = ImageStore(settings)
    key = recipe_hash(settings)
    cache = _cache_file(settings, key)
    own_engine = engine is None
    engine = engine or make_engine(settings.resolved_database_url)
    try:
        if own_engine:
            init_db(engine)
        audit.configure(engine, settings.keys_dir)
        if cache.is_file():
            digest = json.loads(cache.read_text())["digest"]
            if store.has(digest):
                with session_scope(engine) as s:
                    image = s.get(catalog.Image, digest)
                    if image is not None:
                        return BuildResult(
                            catalog.reference_of(settings, image),
                            digest,
                            True,
                            time.monotonic() - started,
                            image.unpacked_size,
                        )
        layout = cached_layout(settings, key)
        with tempfile.TemporaryDirectory(dir=_scratch(settings)) as tmp:
            # A copy: the store's import may touch the layout, the cache must stay as built.
            work = Path(tmp) / "layout"
            shutil.copytree(layout, work)
            result = store.import_path(work, name=NAME)
        with session_scope(engine) as s:
            catalog.record_import(s, actor, result)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"digest": result.digest, "recipe": recipe(settings)}, indent=1))
        reference = canonical(settings.image_registry, result.name, result.digest)
        return BuildResult(reference, result.digest, False, time.monotonic() - started, result.unpacked_size)
    finally:
        if own_engine:
            engine.dispose()


def ensure_cpu_job_image(settings: Settings, engine: Engine | None = None) -> str:
    """The reference (``registry/tre-job-cpu@sha256:...``) of the CPU job image, built if needed.
    An admin still approves it per project (`tre image approve REF --project P`)."""
    return build_cpu_job_image(settings, engine).reference


def _scratch(settings: Settings) -> Path:
    path = settings.images_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def base_recipe(packages: tuple[str, ...] = PACKAGES) -> dict[str, object]:
    """What the Debian layer is made of (the tre files are a layer of their own); the
    control-plane image (`tre.images.controlimage`) asks for more ``packages``."""
    return {
        "suite": SUITE,
        "packages": list(packages),
        "dpkg": list(DPKG_OPTIONS),
        "mmdebstrap": list(MMDEBSTRAP_OPTIONS),
        "sources": SOURCES.read_text() if SOURCES.is_file() else "default",
    }


def cached_layout(settings: Settings, key: str) -> Path:
    """The built OCI layout for recipe ``key``, from the host's cache (``TRE_CACHE_DIR``).

    The cache lives outside any state directory, so a fresh installation or a second state
    directory on the host imports the image in seconds instead of building it again; the
    Debian layer is cached on its own, so a change to the tre files rebuilds only their layer.
    Entries are written to a temporary name and renamed into place whole.
    """
    root = settings.cache_dir / "jobimage"
    layout = root / key / "layout"
    if (layout / "index.json").is_file():
        return layout
    root.mkdir(parents=True, exist_ok=True)
    base_key = hashlib.sha256(json.dumps(base_recipe(), sort_keys=True).encode()).hexdigest()
    base = root / f"base-{base_key}.tar"
    reqs = python_layer.requirements()
    py_key = hashlib.sha256(json.dumps([python_layer.PYTHON_VERSION, reqs]).encode()).hexdigest()
    packages = root / f"python-{py_key}.tar"
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        if not base.is_file():
            partial = Path(tmp) / "base.tar"
            debian_base(partial)
            partial.rename(base)
        if not packages.is_file():
            partial = Path(tmp) / "python.tar"
            python_layer.write_layer(partial, SITE, reqs)
            partial.rename(packages)
        built = _build_layout(Path(tmp), base, packages)
        layout.parent.mkdir(parents=True, exist_ok=True)
        built.rename(layout)
    return layout


def debian_base(dest: Path, packages: tuple[str, ...] = PACKAGES) -> None:
    """A Debian root file system as one layer tar: only ``packages`` and what they need, no
    documentation, no device nodes (mmdebstrap through this machine's apt sources)."""
    args = ["mmdebstrap", "--quiet", "--variant=essential", f"--include={','.join(packages)}"]
    args += list(MMDEBSTRAP_OPTIONS)
    args += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    args += [SUITE, str(dest)]
    if SOURCES.is_file():
        args.append(str(SOURCES))
    try:
        run_tool(args, timeout_s=3600)
    except ImageToolError as exc:
        if os.geteuid() == 0:
            raise
        raise ImageToolError(
            f"{exc} (building an image needs root, or user namespaces with subordinate ids "
            "for mmdebstrap's unshare mode: run it as root or with sudo)"
        ) from exc


def _build_layout(work: Path, base: Path, packages: Path) -> Path:
    tre_layer = work / "tre.tar"
    _write_tre_layer(tre_layer)
    seed_layer = work / "numba-seed.tar"
    _write_seed_layer(seed_layer, (base, packages, tre_layer), work)
    layout = work / "layout"
    ref = f"{layout}:image"
    run_tool(["umoci", "init", "--layout", str(layout)])
    run_tool(["umoci", "new", "--image", ref])
    for layer in (base, packages, tre_layer, seed_layer):
        run_tool(["umoci", "raw", "add-layer", "--image", ref, str(layer)], timeout_s=3600)
    config = ["umoci", "config", "--image", ref, "--author", "tre", "--config.user", USER]
    config += ["--config.workingdir", JOB_TMP, "--config.cmd", "python3"]
    for k, v in ENV.items():
        config += ["--config.env", f"{k}={v}"]
    run_tool(config)
    run_tool(["umoci", "gc", "--layout", str(layout)])
    return layout


def _write_tre_layer(dest: Path) -> None:
    """/opt/tre/python/tre/...: root-owned, world-readable, fixed timestamps."""
    root = TRE_ROOT.parent
    write_files_layer(
        dest, {f"{SITE}/{p.relative_to(root).as_posix()}": (p.read_bytes(), 0o644) for p in tre_files()}
    )


def write_files_layer(
    dest: Path, files: dict[str, tuple[bytes, int]], folders: dict[str, int] | None = None
) -> None:
    """A layer of ``folders`` (path -> mode) first, then ``files`` (path in the image ->
    content, mode) and their parent folders (0755), in the given order: root-owned, fixed
    timestamps, so the same files make the same layer digest on every build."""
    with tarfile.open(dest, "w") as tar:
        seen: set[str] = set()
        for folder, mode in (folders or {}).items():
            seen.add(folder)
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for name, (data, mode) in files.items():
            parts = name.split("/")
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder not in seen:
                    seen.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))


def _write_seed_layer(dest: Path, layers: tuple[Path, ...], work: Path) -> None:
    """The kernels compiled inside the image itself (its Python, Numba and source paths:
    `tre.kernels.numba_seed`), as a layer at ``$TRE_NUMBA_CACHE_SEED``: every job then
    copies them into its empty cache instead of compiling (seconds). The image's other
    layers (all this build's own) are unpacked into a scratch root, the build step runs there
    under bubblewrap (no network, read-only root, the image's uid and environment) writing
    only the seed folder, and the seed is packed root-owned and read-only, fixed timestamps."""
    from pydicom.data import get_testdata_file

    sample = get_testdata_file("CT_small.dcm")  # the series the kernels are compiled on
    if sample is None:
        raise ImageToolError("pydicom's CT_small.dcm test file is missing")
    seed_path = ENV["TRE_NUMBA_CACHE_SEED"]
    root = work / "seed-root"
    root.mkdir()
    try:
        for layer in layers:
            run_tool(["tar", "-x", "-f", str(layer), "-C", str(root)], timeout_s=1800)
        seed = root / seed_path.lstrip("/")
        seed.mkdir(parents=True)
        for mount_point in ("dev", "proc", JOB_TMP.lstrip("/")):  # the base has no /dev
            (root / mount_point).mkdir(exist_ok=True)
        env = {k: v for k, v in ENV.items() if k != "TRE_NUMBA_CACHE_SEED"}
        binds = [("--bind", seed, seed_path), ("--ro-bind", Path(sample), f"{JOB_TMP}/sample/CT_small.dcm")]
        args = _bwrap_argv(root, binds, env)
        args += ["python3", "-P", "-m", "tre.kernels.numba_seed", "build", seed_path]
        args += [f"{JOB_TMP}/sample/CT_small.dcm"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise ImageToolError(f"compiling the kernels in the job image failed: {tail[0][:300]}")
        with tarfile.open(dest, "w") as tar:
            parts = seed_path.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                info = tarfile.TarInfo("/".join(parts[:i]))
                info.type, info.mode = tarfile.DIRTYPE, 0o755 if i < len(parts) else 0o555
                tar.addfile(info)
            for path in sorted(seed.rglob("*")):
                info = tarfile.TarInfo(f"{seed_path.strip('/')}/{path.relative_to(seed).as_posix()}")
                if path.is_dir():
                    info.type, info.mode = tarfile.DIRTYPE, 0o555
                    tar.addfile(info)
                elif path.is_file() and not path.is_symlink():
                    data = path.read_bytes()
                    info.size, info.mode = len(data), 0o444
                    tar.addfile(info, io.BytesIO(data))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _bwrap_argv(
    rootfs: Path,
    binds: list[tuple[str, Path, str]],
    env: dict[str, str],
    user: str = USER,
    share_net: bool = False,
) -> list[str]:
    """bubblewrap running a command in the image as a job would: no network, read-only
    root, the image's uid, a clean environment, a private /tmp; ``binds`` are
    (``--ro-bind`` or ``--bind``, host path, path in the image). One list for the smoke
    test and the seed build, so the build compiles the kernels in the sandbox jobs get.
    ``share_net`` keeps the host's network (only the control-plane image's smoke test, whose
    `tre serve` must answer on a loopback port)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ImageToolError("bubblewrap is not installed")
    uid, gid = user.split(":")  # bwrap maps them to the caller
    argv = [bwrap, "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", JOB_TMP]
    for flag, source, target in binds:
        argv += [flag, str(source), target]
    argv += ["--unshare-all", "--unshare-user", *(["--share-net"] if share_net else [])]
    argv += ["--uid", uid, "--gid", gid, "--die-with-parent", "--clearenv"]
    for k, v in env.items():
        argv += ["--setenv", k, v]
    return [*argv, "--chdir", JOB_TMP]


def sandbox_argv(rootfs: Path, data: Path, output: Path) -> list[str]:
    """bubblewrap running a command in the image as a job would, /data read-only and
    /output writable."""
    return _bwrap_argv(rootfs, [("--ro-bind", data, "/data"), ("--bind", output, "/output")], ENV)


def smoke_test(rootfs: Path, data: Path, output: Path, timeout_s: float = 600) -> str:
    """Run the kernels and the demo job inside the image under bubblewrap (no network,
    read-only root, the image's uid); returns their combined output."""
    from tre.demo_job import DEMO_JOB_SOURCE

    base = sandbox_argv(rootfs, data, output)
    kernels = [
        "python3", "-m", "tre.kernels.job", "--input", "/data", "--output", "/output/preprocessed",
        "--spacing", "1", "1", "1", "--window", "-1000", "400", "--device", "cpu",
    ]  # fmt: skip
    out = []
    for command in (kernels, ["python3", "-c", DEMO_JOB_SOURCE]):
        proc = subprocess.run(
            [*base, *command], capture_output=True, text=True, timeout=timeout_s, check=False
        )
        out.append(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise ImageToolError(f"{command[:3]} failed in the job image: {tail[0][:300]}")
    return "\n".join(out)


def digest_of(reference: str) -> str:
    return parse_reference(reference).digest
