"""The platform's CPU job image, built on this machine without Docker or a registry.

A Debian root filesystem from Debian's own packages (`mmdebstrap`, through this machine's
apt sources: Python 3.11, numpy, pydicom, numba, nibabel, scipy, Pillow), plus a second layer
holding the `tre.kernels` package and the demo job at ``/opt/tre/python``; packed as an OCI
image by umoci with the runtime config of `sandbox_images/Dockerfile.cpu` (uid 10001,
HOME=/tmp, NUMBA_CACHE_DIR under /tmp), then imported into the image store like any
researcher's image (same verification, same unpacking).

Cached by the hash of its recipe (Debian suite, package list, the tre files it carries, the
config): a second build with an unchanged recipe returns the stored reference at once.
`ensure_cpu_job_image` is what `tre demo` / `tre preprocess` call; `smoke_test` runs the
kernels and the demo job inside the built root filesystem under bubblewrap.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from tre.config import Settings
from tre.images.errors import ImageToolError
from tre.images.reference import canonical, parse_reference
from tre.images.store import ImageStore
from tre.images.tools import run_tool

NAME = "tre-job-cpu"
SUITE = "bookworm"
PACKAGES = (
    "python3",
    "python3-numpy",
    "python3-scipy",
    "python3-pydicom",
    "python3-numba",
    "python3-nibabel",
    "python3-pil",
    "python3-gdcm",  # JPEG 2000, JPEG-LS and JPEG lossless DICOM for the cohort job
)
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


def base_recipe() -> dict[str, object]:
    """What the Debian layer is made of (the tre files are a layer of their own)."""
    return {
        "suite": SUITE,
        "packages": list(PACKAGES),
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
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        if not base.is_file():
            partial = Path(tmp) / "base.tar"
            _debian_base(partial)
            partial.rename(base)
        built = _build_layout(Path(tmp), base)
        layout.parent.mkdir(parents=True, exist_ok=True)
        built.rename(layout)
    return layout


def _debian_base(dest: Path) -> None:
    args = ["mmdebstrap", "--quiet", "--variant=essential", f"--include={','.join(PACKAGES)}"]
    args += list(MMDEBSTRAP_OPTIONS)
    args += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    args += [SUITE, str(dest)]
    if SOURCES.is_file():
        args.append(str(SOURCES))
    run_tool(args, timeout_s=3600)


def _build_layout(work: Path, base: Path) -> Path:
    tre_layer = work / "tre.tar"
    _write_tre_layer(tre_layer)
    layout = work / "layout"
    ref = f"{layout}:image"
    run_tool(["umoci", "init", "--layout", str(layout)])
    run_tool(["umoci", "new", "--image", ref])
    run_tool(["umoci", "raw", "add-layer", "--image", ref, str(base)], timeout_s=3600)
    run_tool(["umoci", "raw", "add-layer", "--image", ref, str(tre_layer)])
    config = ["umoci", "config", "--image", ref, "--author", "tre", "--config.user", USER]
    config += ["--config.workingdir", JOB_TMP, "--config.cmd", "python3"]
    for k, v in ENV.items():
        config += ["--config.env", f"{k}={v}"]
    run_tool(config)
    run_tool(["umoci", "gc", "--layout", str(layout)])
    return layout


def _write_tre_layer(dest: Path) -> None:
    """/opt/tre/python/tre/...: root-owned, world-readable, fixed timestamps."""
    with tarfile.open(dest, "w") as tar:
        seen: set[str] = set()
        for path in tre_files():
            rel = path.relative_to(TRE_ROOT.parent).as_posix()
            parts = f"{SITE}/{rel}".split("/")
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder not in seen:
                    seen.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{SITE}/{rel}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def smoke_test(rootfs: Path, data: Path, output: Path, timeout_s: float = 600) -> str:
    """Run the kernels and the demo job inside the image under bubblewrap (no network,
    read-only root, the image's uid); returns their combined output."""
    from tre.demo_job import DEMO_JOB_SOURCE

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ImageToolError("bubblewrap is not installed")
    uid, gid = USER.split(":")
    base = [bwrap, "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", JOB_TMP]
    base += ["--ro-bind", str(data), "/data", "--bind", str(output), "/output", "--unshare-all"]
    base += ["--unshare-user", "--uid", uid, "--gid", gid, "--die-with-parent", "--clearenv"]
    for k, v in ENV.items():
        base += ["--setenv", k, v]
    base += ["--chdir", JOB_TMP]
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
