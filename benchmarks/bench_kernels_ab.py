"""Benchmark: the CPU kernels of another git revision against the working tree's, interleaved.

Why: on a shared machine the time of one run swings by 2x with the other processes, so a
before/after taken in two runs says little. This loads ``tre/kernels/cpu.py`` of ``--base``
(default ``main``) as a second module next to the working tree's and times both on the
bench_preprocess volume in alternation (A B, B A, ...), in one process: the same load hits
both. Prints median wall and CPU seconds per recipe and per pass, their ratios new/base, the
ratio to the memory-bandwidth bound, and checks that both give the same crop and the largest
difference of their outputs.

    PYTHONPATH=. python benchmarks/bench_kernels_ab.py --base main --rounds 9
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numba
import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import bench_preprocess as bp  # noqa: E402

from tre.kernels import cpu as cpu_work  # noqa: E402
from tre.kernels import pipeline  # noqa: E402
from tre.kernels.buffers import OutputPool  # noqa: E402
from tre.kernels.grid import grid_tables  # noqa: E402


def load_base(rev: str, tmp: Path) -> ModuleType:
    """``tre/kernels/cpu.py`` as of ``rev``, imported under another name (own Numba cache)."""
    src = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:tre/kernels/cpu.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = tmp / "cpu_base.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("cpu_base", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main", help="git revision to compare with (default main)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="256x256x150 volume")
    ap.add_argument(
        "--percentile",
        action="store_true",
        help="the percentile recipe (window, then clip to the 0.5/99.5 percentiles of the foreground)",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="also time the working tree writing into a reused output buffer (an OutputPool, as "
        "the cohort job does from its third series on), printed as 'work+reused buffer'",
    )
    args = ap.parse_args(argv)
    raw = bp.chest_phantom(bp.volume_shape(args.quick))
    nz = raw.shape[0]
    tables = grid_tables(raw.shape, bp.SPACING_ZYX, bp.TARGET_ZYX)

    recipe = bp.params()
    if args.percentile:
        recipe = dataclasses.replace(recipe, percentile_clip=(0.5, 99.5))

    pool = OutputPool()

    def run(mod: ModuleType, reuse: bool = False) -> pipeline.PreprocessResult:
        backend = mod.CpuBackend(raw, np.full(nz, bp.SLOPE), np.full(nz, bp.INTERCEPT), tables)
        res = pipeline.run_recipe(backend, recipe, tables.shape, pool if reuse else None)
        if reuse:
            pool.give(res.image)  # the cohort does this once the output has been written
        return res

    with tempfile.TemporaryDirectory() as tmp:
        mods = {"base": load_base(args.base, Path(tmp)), "work": cpu_work}
        if args.reuse:
            mods["work+reused buffer"] = cpu_work

        def run_named(name: str, mod: ModuleType) -> pipeline.PreprocessResult:
            return run(mod, name.endswith("reused buffer"))

        first = {name: run_named(name, mod) for name, mod in mods.items()}
        same_box = first["base"].bbox == first["work"].bbox
        diff = float(np.abs(first["base"].image - first["work"].image).max()) if same_box else float("nan")
        out_bytes = first["work"].image.nbytes
        del first
        keys: tuple[str, ...] = ("total", "stats", "normalize")
        if args.percentile:
            keys += ("percentiles", "clipped_stats")
        wall: dict[str, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in mods}
        cpu: dict[str, list[float]] = {n: [] for n in mods}
        load = [os.getloadavg()[0]]
        for rnd in range(args.rounds):
            order = list(mods.items())
            for name, mod in order if rnd % 2 == 0 else order[::-1]:  # A B, B A: no order bias
                c0 = time.process_time()
                t0 = time.perf_counter()
                res = run_named(name, mod)
                wall[name]["total"].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                for k in keys[1:]:
                    wall[name][k].append(res.timings_s[k])
                del res
    load.append(os.getloadavg()[0])
    rates = bp.copy_rates()
    bw = max(rates.values())
    bound = (raw.nbytes + out_bytes) / bw
    med = {n: {k: statistics.median(v) for k, v in wall[n].items()} for n in mods}
    cmed = {n: statistics.median(v) for n, v in cpu.items()}
    low = {n: {k: min(v) for k, v in wall[n].items()} for n in mods}
    cmin = {n: min(v) for n, v in cpu.items()}
    print(
        f"volume {raw.shape} int16 -> grid {tables.shape}; {args.rounds} rounds; base {args.base}; "
        f"{numba.get_num_threads()} threads; load average {min(load):.1f}-{max(load):.1f}"
    )
    print(f"same crop: {same_box}; max |work - base| = {diff:.3g} (z-score units)")
    print(
        f"memory-bandwidth bound {bound * 1e3:.1f} ms at {bw / 1e9:.1f} GB/s, the faster copy "
        f"(one thread {rates['single'] / 1e9:.1f} GB/s, {numba.get_num_threads()} threads "
        f"{rates['parallel'] / 1e9:.1f} GB/s); input {raw.nbytes / 2**20:.0f} MiB read + "
        f"output {out_bytes / 2**20:.0f} MiB written"
    )
    for name in mods:
        m = med[name]
        print(
            f"{name}: recipe {m['total'] * 1e3:.1f} ms wall ({m['total'] / bound:.1f}x the bound), "
            f"{cmed[name] * 1e3:.1f} ms CPU; stats pass {m['stats'] * 1e3:.1f} ms, "
            f"normalize pass {m['normalize'] * 1e3:.1f} ms"
            + "".join(f", {k} {m[k] * 1e3:.1f} ms" for k in keys[3:])
        )
    for name in mods:
        m = low[name]
        print(
            f"{name} (min of the rounds): recipe {m['total'] * 1e3:.1f} ms wall ({m['total'] / bound:.1f}x), "
            f"{cmin[name] * 1e3:.1f} ms CPU; stats pass {m['stats'] * 1e3:.1f} ms, "
            f"normalize pass {m['normalize'] * 1e3:.1f} ms"
        )
    b = med["base"]
    for name in [n for n in mods if n != "base"]:
        w = med[name]
        print(
            f"{name}/base: recipe wall {w['total'] / b['total']:.3f}, CPU {cmed[name] / cmed['base']:.3f}, "
            f"stats pass {w['stats'] / b['stats']:.3f}, normalize pass {w['normalize'] / b['normalize']:.3f}"
            + "".join(f", {k} {w[k] / b[k]:.3f}" for k in keys[3:])
        )
    if args.reuse:
        print(
            "('work+reused buffer' writes into an output buffer written before, as the cohort job "
            "does from its third series on; a single volume processed once has no such buffer, "
            "so its figure is 'work')"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
