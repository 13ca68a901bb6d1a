"""The image's Numba cache seed (`tre.kernels.numba_seed`), with small real kernels in fresh
processes: a read-only seed made by compiling into an empty cache is copied into the job's
empty writable cache and loaded (cache hits, no compilation); a stale or foreign seed is
never loaded and never breaks a kernel; a damaged one is not even copied. The job's real
kernels, built by the real image build step and used read-only inside the bubblewrap
sandbox: tests/kernels/test_sandbox_cohort.py."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tre.kernels.numba_seed import MANIFEST_NAME, seed_numba_cache, write_manifest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[2]
KERNEL = textwrap.dedent(
    """
    from numba import njit

    @njit(cache=True)
    def triple(x):
        return 3 * x
    """
)
MODULES = ("k_same", "k_edited", "k_old_numba")
# The job's start-up order: the seed step, then Numba (it reads NUMBA_CACHE_DIR on import).
CALL = textwrap.dedent(
    f"""
    import importlib, json
    from tre.kernels.numba_seed import seed_numba_cache
    out = {{"status": seed_numba_cache()}}
    for name in {MODULES!r}:
        f = importlib.import_module(name).triple
        out[name] = [f(14), sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
    print(json.dumps(out))
    """
)


def _python(kernel_dir: Path, **env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "TRE_NUMBA"))}
    full = {**base, "PYTHONPATH": f"{REPO}{os.pathsep}{kernel_dir}", **env}
    proc = subprocess.run(
        [sys.executable, "-c", CALL], env=full, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(kernel folder, seed): compiled into an empty cache as the image build does, recorded
    in the manifest, read-only."""
    root = tmp_path_factory.mktemp("numba-seed")
    kernel_dir = root / "kernels"
    kernel_dir.mkdir()
    for name in MODULES:
        (kernel_dir / f"{name}.py").write_text(KERNEL)
    seed = root / "seed"
    out = _python(kernel_dir, NUMBA_CACHE_DIR=str(seed))
    assert out == {"status": "no-seed", **{m: [42, 0, 1] for m in MODULES}}
    write_manifest(seed)
    _set_writable(seed, False)
    # k_edited: its source changes after the image was built (another source hash).
    (kernel_dir / "k_edited.py").write_text(KERNEL + "\n# edited after the build\n")
    return kernel_dir, seed


@pytest.fixture
def seed_copy(built: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The kernels (in place: Numba's cache keys include their folder) and a private,
    writable copy of the seed, for a test to spoil."""
    kernel_dir, src = built
    seed = tmp_path / "seed"
    for path in sorted(src.rglob("*")):
        target = seed / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return kernel_dir, seed


def test_seed_is_loaded_and_a_stale_one_is_compiled_over(
    seed_copy: tuple[Path, Path], tmp_path: Path
) -> None:
    kernel_dir, seed = seed_copy
    # k_old_numba: a consistent seed entry written by another Numba version.
    (index,) = seed.rglob("k_old_numba*.nbi")
    with index.open("rb") as f:
        pickle.load(f)
        rest = f.read()
    index.write_bytes(pickle.dumps("0.1.0") + rest)
    write_manifest(seed)
    _set_writable(seed, False)
    cache = tmp_path / "job-tmp" / "numba-cache"
    out = _python(kernel_dir, NUMBA_CACHE_DIR=str(cache), TRE_NUMBA_CACHE_SEED=str(seed))
    assert out == {
        "status": "copied",
        "k_same": [42, 1, 0],
        "k_edited": [42, 0, 1],
        "k_old_numba": [42, 0, 1],
    }
    assert (seed / MANIFEST_NAME).exists() and not (cache / MANIFEST_NAME).exists()
    # A cache that already holds something is the job's own: left alone.
    before = sorted(p.name for p in cache.rglob("*"))
    assert seed_numba_cache(seed, cache) == "cache-not-empty"
    assert sorted(p.name for p in cache.rglob("*")) == before


def test_seed_for_another_cpu_is_not_loaded(built: tuple[Path, Path], tmp_path: Path) -> None:
    kernel_dir, seed = built
    out = _python(
        kernel_dir,
        NUMBA_CACHE_DIR=str(tmp_path / "c"),
        TRE_NUMBA_CACHE_SEED=str(seed),
        NUMBA_CPU_NAME="generic",  # this process's kernels are for another CPU than the seed's
        NUMBA_CPU_FEATURES="",
    )
    assert out == {"status": "copied", **{m: [42, 0, 1] for m in MODULES}}


@pytest.mark.parametrize(
    "damage", ["truncated-index", "path-outside", "not-a-manifest", "other-python", "other-kernels-path"]
)
def test_damaged_seed_is_not_copied(seed_copy: tuple[Path, Path], tmp_path: Path, damage: str) -> None:
    _kernel_dir, seed = seed_copy
    (index, *_) = sorted(seed.rglob("*.nbi"))
    manifest = json.loads((seed / MANIFEST_NAME).read_text())
    if damage == "truncated-index":  # Numba itself would fail unpickling this one
        index.write_bytes(index.read_bytes()[:20])
    elif damage == "path-outside":
        (tmp_path / "escape.nbi").write_bytes(index.read_bytes())
        manifest["files"]["../escape.nbi"] = manifest["files"][index.relative_to(seed).as_posix()]
    elif damage == "not-a-manifest":
        manifest = ["not", "a", "manifest"]
    elif damage == "other-python":
        manifest["python"] = "cpython-27"
    else:  # built from a copy of the kernels elsewhere (e.g. a Docker build context)
        manifest["kernels"] = "/src/tre/kernels"
    (seed / MANIFEST_NAME).write_text(json.dumps(manifest))
    cache = tmp_path / "c"
    foreign = damage in ("other-python", "other-kernels-path")
    assert seed_numba_cache(seed, cache) == ("foreign" if foreign else "invalid")
    assert not cache.exists()


def test_without_seed_or_cache_dir_nothing_happens(tmp_path: Path) -> None:
    assert seed_numba_cache(tmp_path / "missing", tmp_path / "c") == "no-seed"
    assert seed_numba_cache(tmp_path, None) == "no-seed" or "NUMBA_CACHE_DIR" in os.environ
    assert not (tmp_path / "c").exists()
