"""The Numba cache seed: a trusted warm-up run fills it, every job gets a private copy in
its own /tmp (so kernels are not recompiled per job), and no job can change the seed."""

from __future__ import annotations

import importlib.util
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tre.executors.base import RunControl
from tre.executors.local import LocalExecutor

KERNEL = textwrap.dedent(
    """
    from numba import njit

    @njit(cache=True)
    def triple(x):
        return 3 * x
    """
)
CALL = (
    "import json, os, sys; sys.path.insert(0, '/opt/testkernel'); import kernel; "
    "v = kernel.triple(14); "
    "print(json.dumps({'value': v, 'hits': sum(kernel.triple.stats.cache_hits.values()), "
    "'misses': sum(kernel.triple.stats.cache_misses.values()), "
    "'cache_dir': os.environ.get('NUMBA_CACHE_DIR')}))"
)


def test_seed_files_are_copied_privately_into_each_job(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "mod_abc").mkdir(parents=True)
    (seed / "mod_abc" / "f-1.py311.nbi").write_bytes(b"index")
    (seed / "top.nbc").write_bytes(b"code")
    (seed / "escape").symlink_to("/etc/hostname")  # not a regular file: never copied
    executor = LocalExecutor(numba_cache_seed=seed, host_toolchain=True)
    code = textwrap.dedent(
        """
        import json, os
        root = os.environ['NUMBA_CACHE_DIR']
        found = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
        open(os.path.join(root, 'top.nbc'), 'wb').write(b'tampered')  # private copy: allowed
        print(json.dumps({'root': root, 'found': found}))
        """
    )
    run = sandbox.run(code, executor=executor)
    assert run.result.state == "succeeded", run.log
    assert run.json_lines() == [{"root": "/tmp/.numba-cache", "found": ["mod_abc/f-1.py311.nbi", "top.nbc"]}]
    assert (seed / "top.nbc").read_bytes() == b"code"  # the seed itself is untouched


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed")
def test_warm_up_then_jobs_load_compiled_kernels(sandbox: Sandbox, tmp_path: Path) -> None:
    kernel_dir = tmp_path / "kernel"
    kernel_dir.mkdir()
    (kernel_dir / "kernel.py").write_text(KERNEL)
    seed = tmp_path / "seed"
    executor = LocalExecutor(
        numba_cache_seed=seed, extra_ro_binds=[(kernel_dir, "/opt/testkernel")], host_toolchain=True
    )
    cold = sandbox.run(CALL, executor=executor)  # before warm-up: compiles, seed stays absent
    assert cold.json_lines()[0]["misses"] == 1 and not seed.exists()

    warm_spec = replace(
        cold.spec, job_id=cold.spec.job_id + "w", output_dir=tmp_path / "w-out", log_path=tmp_path / "w.log"
    )
    result = executor.warm_numba_cache(warm_spec, RunControl())
    assert result.state == "succeeded", (tmp_path / "w.log").read_text()
    assert any(p.suffix == ".nbc" for p in seed.rglob("*"))
    run = sandbox.run(CALL, executor=executor)
    assert run.result.state == "succeeded", run.log
    out = run.json_lines()[0]
    assert out["value"] == 42
    assert out["hits"] == 1 and out["misses"] == 0, out
    assert out["cache_dir"] == "/tmp/.numba-cache"
