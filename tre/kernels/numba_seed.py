"""A Numba cache baked into the job image, copied into the job's writable cache at start-up.

Why: the job images run with a read-only root filesystem and ``NUMBA_CACHE_DIR`` on the
job's private, empty /tmp, so every Kubernetes or Docker job compiled the kernels (seconds
of CPU) before its first series. Numba will not use a cache directory it cannot write to
(its cache locators probe the directory with a temporary file and skip it when that fails),
so a cache in the image cannot be used in place. Instead the image build compiles the
kernels into a seed directory (``python -m tre.kernels.numba_seed build DIR``, which runs
the real job on pydicom's bundled CT_small.dcm for each recipe whose kernels differ) and
records the files' SHA-256 in ``tre-numba-seed.json``; the image points
``$TRE_NUMBA_CACHE_SEED`` at it, and `seed_numba_cache` (the job's first step, before Numba
is imported) copies it into ``$NUMBA_CACHE_DIR`` when that is empty.

What keeps a wrong seed harmless: Numba itself keys every cached kernel by the Python
version (the ``.pyXY.nbi`` index name), the Numba version (first record of the index), a
hash of the kernel's source file, its bytecode, and the CPU name and features it was
compiled for. A seed built from other sources, another Python or Numba, or for another CPU
is copied but never loaded: those kernels miss and are compiled into the writable cache as
without a seed. What Numba would not survive, a truncated or altered file (it unpickles
the index unguarded), is caught here: the seed is copied only when every file matches the
manifest (and not at all for another Python, or for kernels compiled from another path,
which Numba files elsewhere: the mistake a build makes when it imports ``tre`` from its build
context instead of the installed copy). The seed is compiled
code, so it must come from the image's own build (trusted as the image is), never from
anything another job can write. A job that sets ``TRE_NUMBA_CACHE_SEED`` itself (its spec's
environment) gains nothing: it already runs code of its choosing in its own sandbox, and the
copy goes only into its own private cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

SEED_ENV = "TRE_NUMBA_CACHE_SEED"
CACHE_ENV = "NUMBA_CACHE_DIR"
MANIFEST_NAME = "tre-numba-seed.json"
MAX_FILES = 2000
MAX_BYTES = 256 * 2**20


def _numba_version() -> str | None:
    """Numba's version without importing Numba (recorded in the manifest for people; the
    copy does not check it: importlib.metadata costs ~25 ms, and Numba ignores an index
    written by another version by itself)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numba")
    except PackageNotFoundError:
        return None


def _python_tag() -> str:
    return sys.implementation.cache_tag or sys.implementation.name


def _kernels_folder() -> str:
    """Where this process imports the kernels from, as Numba spells a source path (absolute,
    symbolic links kept): Numba files each kernel's cache under a folder named after it."""
    return os.path.dirname(os.path.abspath(__file__))


def seed_numba_cache(seed: Path | None = None, cache: Path | None = None) -> str:
    """Copy the seed (default ``$TRE_NUMBA_CACHE_SEED``) into the Numba cache (default
    ``$NUMBA_CACHE_DIR``) when the cache is missing or empty. Returns what happened, one of
    ``copied``, ``no-seed``, ``cache-not-empty``, ``foreign`` (another Python, or built from
    kernels at another path: a build that imported them from its build context),
    ``invalid`` (unreadable, too large, or a file that does not match the manifest) or
    ``unwritable``; never raises: without the copy the kernels are compiled as before."""
    if seed is None:
        seed = Path(os.environ[SEED_ENV]) if os.environ.get(SEED_ENV) else None
    if cache is None:
        cache = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else None
    if seed is None or cache is None:
        return "no-seed"
    try:
        if cache.exists() and (not cache.is_dir() or any(cache.iterdir())):
            return "cache-not-empty"
        manifest = json.loads((seed / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no-seed" if not (seed / MANIFEST_NAME).exists() else "invalid"
    if not isinstance(manifest, dict):
        return "invalid"
    if manifest.get("python") != _python_tag() or manifest.get("kernels") != _kernels_folder():
        return "foreign"  # Numba would ignore it anyway: another Python, or kernels elsewhere
    contents = _read_verified(seed, manifest.get("files"))
    if contents is None:
        return "invalid"
    try:
        _write(cache, contents)
    except OSError:
        return "unwritable"
    return "copied"


def _read_verified(seed: Path, files: object) -> dict[str, bytes] | None:
    """Every file the manifest names, read and checked against its SHA-256; None if any is
    missing, altered, outside the seed, or the whole is implausibly large."""
    if not isinstance(files, dict) or len(files) > MAX_FILES:
        return None
    contents: dict[str, bytes] = {}
    total = 0
    for rel, digest in files.items():
        parts = Path(str(rel)).parts
        if not parts or Path(str(rel)).is_absolute() or ".." in parts:
            return None
        path = seed / str(rel)
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                return None
            data = path.read_bytes()
        except OSError:
            return None
        total += len(data)
        if total > MAX_BYTES or hashlib.sha256(data).hexdigest() != digest:
            return None
        contents[str(rel)] = data
    return contents


def _write(cache: Path, contents: dict[str, bytes]) -> None:
    """Data files first, indexes last: a copy cut short never indexes a missing file (and
    Numba treats a missing data file as a miss anyway)."""
    for rel in sorted(contents, key=lambda r: (r.endswith(".nbi"), r)):
        path = cache / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[rel])


def write_manifest(seed: Path) -> dict[str, object]:
    """Record the seed's files, Numba and Python in ``MANIFEST_NAME`` (the build's last step)."""
    version = _numba_version() or "unknown"  # Debian's python3-numba may lack the metadata
    files = {
        p.relative_to(seed).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(seed.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != MANIFEST_NAME
    }
    manifest: dict[str, object] = {
        "numba": version,
        "python": _python_tag(),
        "kernels": _kernels_folder(),
        "files": files,
    }
    (seed / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


# The pixel types whose kernels the seed holds (see build_seed).
SEED_DTYPES = ("int16", "uint16")


def build_seed(seed: Path, sample: Path | None = None) -> dict[str, object]:
    """Compile the job's kernels into ``seed`` (must be a fresh process: Numba reads
    ``NUMBA_CACHE_DIR`` when first imported) by running the real job on ``sample`` (default
    pydicom's bundled CT_small.dcm), once per recipe whose kernels differ, then write the
    manifest."""
    import shutil
    import tempfile

    if "numba" in sys.modules:
        raise RuntimeError("build the seed in a fresh process: numba is already imported")
    seed.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_ENV] = str(seed.resolve())
    os.environ.pop(SEED_ENV, None)  # the job must compile, not copy

    from pydicom.data import get_testdata_file

    from tre.kernels.job import run

    if sample is None:
        found = get_testdata_file("CT_small.dcm")
        if found is None:
            raise RuntimeError("pydicom's CT_small.dcm test file is missing")
        sample = Path(str(found))
    with tempfile.TemporaryDirectory(prefix="tre-numba-seed-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        shutil.copyfile(str(sample), data / "CT_small.dcm")
        # Window-only and percentile-clip recipes use different kernels: compile both.
        for n, clip in enumerate((None, ("0.5", "99.5"))):
            argv = ["--input", str(data), "--output", f"{tmp}/out{n}", "--spacing", "1", "1", "1"]
            argv += ["--window", "-1000", "400", "--format", "nii"]
            argv += ["--percentile-clip", *clip] if clip else []
            if run(argv) != 0:
                raise RuntimeError(f"the warm-up job failed (recipe {n})")
    # The sample is int16 (signed CT); unsigned 16-bit pixels (most MR, and CT stored
    # unsigned with a -1024 intercept) take kernels of their own, compiled here the way the
    # job's warm-up thread calls them. float32 (float and 32-bit pixel data, rare) is left
    # to compile in the job: each type costs the build as much again.
    from tre.kernels.warm import INT16_OUTPUT, PERCENTILE_CLIP, WINDOW_ONLY, warm_kernels

    for recipe in (WINDOW_ONLY, PERCENTILE_CLIP):
        for dtype in SEED_DTYPES[1:]:  # SEED_DTYPES[0], int16, is the sample's: compiled above
            warm_kernels(recipe, "cpu", dtype)
    # The int16 output's normalize pass (--dtype int16, tre.kernels.quantise) is a kernel of
    # its own, the same for both recipes: once per pixel type.
    for dtype in SEED_DTYPES:
        warm_kernels(INT16_OUTPUT, "cpu", dtype)
    return write_manifest(seed)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not (args[:1] == ["build"] and len(args) in (2, 3)) and not (args[:1] == ["copy"] and len(args) == 2):
        print(
            "usage: python -m tre.kernels.numba_seed build SEED_DIR [SAMPLE.dcm] | copy SEED_DIR",
            file=sys.stderr,
        )
        return 2
    if args[0] == "copy":  # the job's start-up step on its own (diagnostics, tests)
        print(seed_numba_cache(Path(args[1])))
        return 0
    try:
        manifest = build_seed(Path(args[1]), Path(args[2]) if len(args) == 3 else None)
    except (OSError, RuntimeError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    files = manifest["files"]
    assert isinstance(files, dict)
    size = sum((Path(args[1]) / rel).stat().st_size for rel in files)
    print(f"numba cache seed: {len(files)} files, {size / 2**20:.1f} MiB in {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
