"""Benchmark: a job's kernels from the image's baked Numba cache against compiling them.

What a container of the job image does at start-up (sandbox_images/Dockerfile.cpu): its
``NUMBA_CACHE_DIR`` on /tmp is empty; with ``TRE_NUMBA_CACHE_SEED`` it copies the baked seed
there first (`tre.kernels.numba_seed`), without it Numba compiles every kernel. Here the seed
is built once with the image build's own step (``python -m tre.kernels.numba_seed build``),
then fresh processes run the job's start-up (the seed step, then the kernels of both recipes,
window and percentile clip, on a tiny volume: `tre.kernels.warm.warm_kernels`), interleaved
with and without the seed. Printed per run: the copy's milliseconds, wall and CPU seconds of
the kernels' first call, Numba's cache hits and misses; then the medians and the ratio.

    PYTHONPATH=. python benchmarks/bench_numba_seed.py [--repeat 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_UP = """
import json, resource, time
t0 = time.perf_counter()
from tre.kernels.numba_seed import seed_numba_cache
status = seed_numba_cache()
t1 = time.perf_counter()
from numba.core.registry import CPUDispatcher
from tre.kernels import cpu
from tre.kernels.params import PreprocessParams
from tre.kernels.warm import warm_kernels
for clip in (None, (0.5, 99.5)):
    warm_kernels(PreprocessParams((1.0, 1.0, 1.0), (-1000.0, 400.0), clip), "cpu")
t2 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_SELF)
ds = [f for f in vars(cpu).values() if isinstance(f, CPUDispatcher)]
print(json.dumps({"status": status, "copy_ms": 1e3 * (t1 - t0), "kernels_wall_s": t2 - t1,
                  "cpu_s": ru.ru_utime + ru.ru_stime,
                  "hits": sum(sum(f.stats.cache_hits.values()) for f in ds),
                  "misses": sum(sum(f.stats.cache_misses.values()) for f in ds)}))
"""


def fresh(cache: Path, seed: Path | None) -> dict[str, float | str]:
    shutil.rmtree(cache, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "TRE_NUMBA"))}
    env.update({"PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(cache)})
    if seed is not None:
        env["TRE_NUMBA_CACHE_SEED"] = str(seed)
    proc = subprocess.run(
        [sys.executable, "-c", START_UP], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tre-bench-numba-seed")
    args = ap.parse_args()
    seed = args.workdir / "seed"
    shutil.rmtree(seed, ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tre.kernels.numba_seed", "build", str(seed)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        capture_output=True,
    )
    files = [p for p in seed.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(
        f"seed built in {time.perf_counter() - t:.1f} s: {len(files)} files, {size / 2**20:.2f} MiB; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    runs: dict[str, list[dict[str, float | str]]] = {"seeded": [], "compiled": []}
    for i in range(args.repeat):
        for name in runs:
            r = fresh(args.workdir / "cache", seed if name == "seeded" else None)
            runs[name].append(r)
            print(
                f"  {name:8s} #{i + 1}: {r['status']:8s} copy {float(r['copy_ms']):5.1f} ms, kernels "
                f"{float(r['kernels_wall_s']):6.2f} s wall, process CPU {float(r['cpu_s']):6.2f} s, "
                f"hits {r['hits']} misses {r['misses']}; load {os.getloadavg()[0]:.1f}"
            )
    med = {n: statistics.median(float(r["kernels_wall_s"]) for r in rs) for n, rs in runs.items()}
    cpu = {n: statistics.median(float(r["cpu_s"]) for r in rs) for n, rs in runs.items()}
    print(
        f"median: seeded {med['seeded']:.2f} s wall / {cpu['seeded']:.2f} s CPU, compiled "
        f"{med['compiled']:.2f} s / {cpu['compiled']:.2f} s: {med['compiled'] / med['seeded']:.1f}x "
        f"({cpu['compiled'] / cpu['seeded']:.1f}x CPU) faster from the seed"
    )


if __name__ == "__main__":
    main()
