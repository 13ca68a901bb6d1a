"""Benchmark: CT preprocessing with tre.kernels vs SimpleITK, scipy.ndimage and MONAI.

Task (issue 5): synthetic chest-like int16 CT, 512x512x300 voxels at (x, y, z) spacing
(0.7, 0.7, 2.5) mm -> 1 mm isotropic (trilinear), HU window [-1000, 400] scaled to [0, 1],
z-score over the resampled grid, crop to the bounding box of HU > -500. Every method
samples the same output grid (output voxel k at k mm from input voxel 0), so outputs are
compared voxel for voxel with a float64 NumPy reference (`tre.kernels.reference`).

Each method runs in its own child process so that its peak extra memory (VmHWM after
resetting it through /proc/self/clear_refs, minus RSS before the call) is its own.

    python benchmarks/bench_preprocess.py            # full size, CPU, all methods
    python benchmarks/bench_preprocess.py --quick    # 256x256x150, fewer repeats
    python benchmarks/bench_preprocess.py --device cuda   # tre on the GPU (+ tre CPU)

Baselines need the ``bench`` extra: ``pip install -e .[bench]`` (torch==2.13.0 CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tre.kernels.grid import output_shape  # noqa: E402
from tre.kernels.params import PreprocessParams  # noqa: E402

WINDOW = (-1000.0, 400.0)
FG_HU = -500.0
SPACING_ZYX = (2.5, 0.7, 0.7)
TARGET_ZYX = (1.0, 1.0, 1.0)
SLOPE, INTERCEPT = 1.0, -1024.0
CPU_METHODS = ["tre", "sitk", "scipy", "monai"]
LABELS = {
    "tre": "tre.kernels (Numba CPU)",
    "tre-cuda": "tre.kernels (Numba CUDA)",
    "sitk": "SimpleITK ResampleImageFilter",
    "scipy": "scipy.ndimage.map_coordinates o1",
    "monai": "MONAI Spacing+ScaleIntensityRange+Normalize+CropFg",
}

Result = tuple[np.ndarray, tuple[int, int, int]]  # cropped image (z, y, x), crop start in full grid


# ----------------------------------------------------------------------------- data


def chest_phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Stored int16 values (intercept -1024) of a chest-like CT: air, table, body, lungs,
    heart, spine, ribs, noise. Deterministic, so every child process rebuilds it identically."""
    nz, ny, nx = shape
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    out = np.empty(shape, dtype=np.int16)
    rng = np.random.default_rng(seed)
    body = (x / 0.78) ** 2 + ((y + 0.05) / 0.55) ** 2 < 1
    table = (y > 0.72) & (y < 0.78) & (np.abs(x) < 0.9)
    spine = (x / 0.09) ** 2 + ((y - 0.38) / 0.09) ** 2 < 1
    ring = ((x / 0.72) ** 2 + ((y + 0.05) / 0.49) ** 2 < 1) & ((x / 0.66) ** 2 + ((y + 0.05) / 0.43) ** 2 > 1)
    for k in range(nz):
        t = k / max(nz - 1, 1)
        grow = 0.6 + 0.4 * np.sin(np.pi * t)
        lungs = ((np.abs(x) - 0.33) / (0.22 * grow)) ** 2 + ((y + 0.05) / (0.33 * grow)) ** 2 < 1
        heart = ((x + 0.08) / (0.18 * grow)) ** 2 + ((y + 0.02) / (0.16 * grow)) ** 2 < 1
        ribs = ring & (np.cos(18 * np.arctan2(y, x) + 3 * t) > 0.55)
        hu = np.full((ny, nx), -1000.0, dtype=np.float32)
        hu[table] = 200.0
        hu[body] = 40.0
        hu[body & lungs] = -850.0
        hu[heart] = 45.0
        hu[spine | ribs] = 700.0
        noise = rng.integers(-25, 26, size=(ny, nx), dtype=np.int16)
        out[k] = (hu - INTERCEPT).astype(np.int16) + noise
    return out


_SHAPE_OVERRIDE = os.environ.get("BENCH_SHAPE")  # "Z,Y,X": smoke tests only (e.g. the CUDA simulator)


def volume_shape(quick: bool) -> tuple[int, int, int]:
    if _SHAPE_OVERRIDE:
        z, y, x = (int(v) for v in _SHAPE_OVERRIDE.split(","))
        return (z, y, x)
    return (150, 256, 256) if quick else (300, 512, 512)


def params() -> PreprocessParams:
    return PreprocessParams(spacing=TARGET_ZYX, window=WINDOW, foreground_threshold=FG_HU)


# ------------------------------------------------------------------------- methods


def _post_numpy(hu: np.ndarray) -> Result:
    """Window, z-score (stats over the whole grid) and crop, in NumPy, float32."""
    lo, hi = WINDOW
    fg = hu > FG_HU
    v = np.clip(hu, lo, hi)
    v -= lo
    v *= np.float32(1.0 / (hi - lo))
    mean = float(v.mean(dtype=np.float64))
    std = float(v.std(dtype=np.float64))
    box = []
    for axis in range(3):
        idx = np.flatnonzero(fg.any(axis=tuple(a for a in range(3) if a != axis)))
        box += [int(idx[0]), int(idx[-1]) + 1]
    crop = v[box[0] : box[1], box[2] : box[3], box[4] : box[5]]
    out = (crop - np.float32(mean)) * np.float32(1.0 / std)
    return out, (box[0], box[2], box[4])


def run_tre(raw: np.ndarray, device: str = "cpu", workspace: Any = None) -> Result:
    from tre.kernels.pipeline import preprocess_array

    nz = raw.shape[0]
    res = preprocess_array(
        raw,
        np.full(nz, SLOPE),
        np.full(nz, INTERCEPT),
        SPACING_ZYX,
        params(),
        device,
        workspace,  # type: ignore[arg-type]
    )
    LAST_TIMINGS.clear()
    LAST_TIMINGS.update(res.timings_s)
    return res.image, res.crop_offset


LAST_TIMINGS: dict[str, float] = {}


def run_sitk(raw: np.ndarray) -> Result:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(raw)
    img.SetSpacing(SPACING_ZYX[::-1])
    hu = sitk.ShiftScale(sitk.Cast(img, sitk.sitkFloat32), shift=INTERCEPT / SLOPE, scale=SLOPE)
    rs = sitk.ResampleImageFilter()
    rs.SetOutputSpacing(TARGET_ZYX[::-1])
    rs.SetSize([int(v) for v in output_shape(raw.shape, SPACING_ZYX, TARGET_ZYX)[::-1]])  # type: ignore[arg-type]
    rs.SetOutputOrigin(img.GetOrigin())
    rs.SetOutputDirection(img.GetDirection())
    rs.SetInterpolator(sitk.sitkLinear)
    rs.SetOutputPixelType(sitk.sitkFloat32)
    out = rs.Execute(hu)
    return _post_numpy(sitk.GetArrayViewFromImage(out))


def run_scipy(raw: np.ndarray) -> Result:
    from scipy import ndimage

    hu = raw.astype(np.float32) * np.float32(SLOPE) + np.float32(INTERCEPT)
    shape = output_shape(raw.shape, SPACING_ZYX, TARGET_ZYX)  # type: ignore[arg-type]
    out = np.empty(shape, dtype=np.float32)
    ry, rx = TARGET_ZYX[1] / SPACING_ZYX[1], TARGET_ZYX[2] / SPACING_ZYX[2]
    yy, xx = np.meshgrid(
        np.arange(shape[1], dtype=np.float64) * ry, np.arange(shape[2], dtype=np.float64) * rx, indexing="ij"
    )
    slab = 16  # bounded coordinate arrays instead of 3 x 96 M float64
    for z0 in range(0, shape[0], slab):
        n = min(slab, shape[0] - z0)
        zz = (np.arange(z0, z0 + n, dtype=np.float64) * (TARGET_ZYX[0] / SPACING_ZYX[0]))[:, None, None]
        coords = np.stack(np.broadcast_arrays(zz, yy[None], xx[None]))
        ndimage.map_coordinates(hu, coords, order=1, output=out[z0 : z0 + n], mode="nearest", prefilter=False)
    return _post_numpy(out)


def run_monai(raw: np.ndarray) -> Result:
    import torch
    from monai.data import MetaTensor
    from monai.transforms import CropForeground, NormalizeIntensity, ScaleIntensityRange, Spacing, SpatialCrop

    lo, hi = WINDOW
    thr = (FG_HU - lo) / (hi - lo)
    hu = torch.from_numpy(raw).to(torch.float32) * SLOPE + INTERCEPT
    img = MetaTensor(hu[None], affine=torch.diag(torch.tensor([*SPACING_ZYX, 1.0], dtype=torch.float64)))
    out = Spacing(pixdim=TARGET_ZYX, mode="bilinear", padding_mode="border", dtype=torch.float32)(img)
    # MONAI sizes the grid as round(extent + 1): keep the voxels every method shares.
    shape = output_shape(raw.shape, SPACING_ZYX, TARGET_ZYX)  # type: ignore[arg-type]
    out = SpatialCrop(roi_start=(0, 0, 0), roi_end=shape)(out)
    out = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(out)
    start, end = CropForeground(select_fn=lambda x: x > thr, allow_smaller=True).compute_bounding_box(out)
    out = NormalizeIntensity()(out)
    out = SpatialCrop(roi_start=start, roi_end=end)(out)
    arr = out.as_tensor()[0].numpy() if hasattr(out, "as_tensor") else np.asarray(out)[0]
    return arr, (int(start[0]), int(start[1]), int(start[2]))


# --------------------------------------------------------------------- measurement


def _status_kb(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], Result], repeats: int) -> tuple[list[float], int, Result]:
    """Times of ``repeats`` calls after one warm-up, and the worst peak extra RSS in bytes."""
    result = fn()  # warm-up: JIT cache load, imports, thread pools
    del result
    times: list[float] = []
    peak = 0
    result = None
    for _ in range(repeats):
        result = None
        base = _status_kb("VmRSS")
        can = _reset_peak()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if can:
            peak = max(peak, (_status_kb("VmHWM") - base) * 1024)
    assert result is not None
    return times, peak, result


def copy_rates() -> dict[str, float]:
    """Memory copy rates in bytes/s (bytes read plus bytes written), 256 MiB float32.

    ``single``: one thread (``np.copyto``); ``parallel``: every thread the kernels use (a
    Numba ``prange`` copy in 1 MiB blocks). On a machine with many cores one thread does not
    saturate memory, so a bound from the single-thread rate would flatter the kernels.
    """
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def pcopy(dst: np.ndarray, src: np.ndarray) -> None:
        block = 1 << 18
        n = src.shape[0]
        for b in prange((n + block - 1) // block):
            lo = b * block
            hi = min(n, lo + block)
            dst[lo:hi] = src[lo:hi]

    src = np.ones(64 * 2**20, dtype=np.float32)  # 256 MiB
    dst = np.empty_like(src)
    np.copyto(dst, src)
    pcopy(dst, src)
    single = min(_timed(lambda: np.copyto(dst, src)) for _ in range(5))
    parallel = min(_timed(lambda: pcopy(dst, src)) for _ in range(5))
    return {"single": 2 * src.nbytes / single, "parallel": 2 * src.nbytes / parallel}


def copy_bandwidth() -> float:
    """The faster of the two copy rates of `copy_rates`: the bound must be one the machine
    reaches, whichever way; used the same for every method and every before/after."""
    return max(copy_rates().values())


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def max_abs_diff(
    img: np.ndarray, start: tuple[int, int, int], ref: np.ndarray, ref_start: list[int]
) -> float:
    """Max |img - ref| over the region both crops cover (they agree when bboxes agree)."""
    lo = [max(a, b) for a, b in zip(start, ref_start, strict=True)]
    hi = [min(a + n, b + m) for a, n, b, m in zip(start, img.shape, ref_start, ref.shape, strict=True)]
    worst = 0.0
    for z in range(lo[0], hi[0], 32):
        ze = min(z + 32, hi[0])
        a = img[
            z - start[0] : ze - start[0],
            lo[1] - start[1] : hi[1] - start[1],
            lo[2] - start[2] : hi[2] - start[2],
        ]
        b = ref[
            z - ref_start[0] : ze - ref_start[0],
            lo[1] - ref_start[1] : hi[1] - ref_start[1],
            lo[2] - ref_start[2] : hi[2] - ref_start[2],
        ]
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b))))
    return worst


# ----------------------------------------------------------------------- processes


def worker(method: str, quick: bool, repeats: int, refdir: Path) -> dict[str, Any]:
    """Run one method in this (child) process and report its figures as a dict."""
    raw = chest_phantom(volume_shape(quick))
    extra: dict[str, Any] = {}
    if method == "tre-cuda":
        fn, extra = _cuda_fn(raw, repeats)
    else:
        fn = {
            "tre": lambda: run_tre(raw),
            "sitk": lambda: run_sitk(raw),
            "scipy": lambda: run_scipy(raw),
        }.get(method, lambda: run_monai(raw))
        if method == "monai":
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
    times, peak, (img, start) = measure(fn, repeats)
    if LAST_TIMINGS:
        extra["last_run_passes_s"] = dict(LAST_TIMINGS)
    meta = json.loads((refdir / "ref.json").read_text())
    ref = np.load(refdir / "ref.npy", mmap_mode="r")
    diff = max_abs_diff(img, start, ref, meta["start"])
    grid = int(np.prod(meta["full_shape"]))
    return {
        "method": method,
        "times_s": times,
        "median_s": statistics.median(times),
        "voxels_per_s": grid / statistics.median(times),
        "peak_extra_bytes": peak,
        "output_bytes": int(img.nbytes),
        "output_shape": list(img.shape),
        "crop_start": list(start),
        "max_abs_diff_z": diff,
        "max_abs_diff_hu": diff * meta["std"] * (WINDOW[1] - WINDOW[0]),
        **extra,
    }


def _cuda_fn(raw: np.ndarray, repeats: int) -> tuple[Callable[[], Result], dict[str, Any]]:
    """CUDA path with input already in pinned memory (as a loader would leave it) and
    reused device/pinned buffers; per-phase times come from separate synchronised runs."""
    from numba import cuda

    from tre.kernels.cuda import Workspace

    ws = Workspace(pinned_results=True)
    pinned = cuda.pinned_array(raw.shape, dtype=raw.dtype)
    pinned[...] = raw

    def fn() -> Result:
        img, start = run_tre(pinned, "cuda", ws)
        return img, start

    img, _ = fn()
    dev = ws.device("raw", raw.shape, raw.dtype)
    out_dev = ws.device("out", img.shape, np.float32)
    host_out = ws.pinned("out", img.shape, np.float32)
    h2d, d2h, d2d = [], [], []
    twin = ws.device("twin", raw.shape, raw.dtype)
    for _ in range(max(3, repeats)):
        cuda.synchronize()
        d2d.append(_timed(lambda: (twin.copy_to_device(dev, stream=ws.stream), ws.stream.synchronize())))
        h2d.append(_timed(lambda: (dev.copy_to_device(pinned, stream=ws.stream), ws.stream.synchronize())))
        d2h.append(
            _timed(lambda: (out_dev.copy_to_host(host_out, stream=ws.stream), ws.stream.synchronize()))
        )
    extra = {
        "h2d_s": statistics.median(h2d),
        "d2h_s": statistics.median(d2h),
        "h2d_gbps": raw.nbytes / statistics.median(h2d) / 1e9,
        "d2h_gbps": img.nbytes / statistics.median(d2h) / 1e9,
        "d2d_gbps": 2 * raw.nbytes / statistics.median(d2d) / 1e9,  # read + write
        "gpu": _gpu_name(),
    }
    return fn, extra


def _gpu_name() -> str:
    from numba import cuda

    name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
    return name.decode() if isinstance(name, bytes) else str(name)


def run_child(method: str, quick: bool, repeats: int, refdir: Path, timeout: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", method, "--refdir", str(refdir), "--repeats", str(repeats)]
    if quick:
        cmd.append("--quick")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"method": method, "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"method": method, "error": tail[:300]}
    return json.loads(lines[-1])


def build_reference(quick: bool, refdir: Path) -> dict[str, Any]:
    from tre.kernels.reference import preprocess_reference

    raw = chest_phantom(volume_shape(quick))
    nz = raw.shape[0]
    t0 = time.perf_counter()
    ref = preprocess_reference(raw, np.full(nz, SLOPE), np.full(nz, INTERCEPT), SPACING_ZYX, params())
    elapsed = time.perf_counter() - t0
    np.save(refdir / "ref.npy", ref.image)
    meta = {
        "start": list(ref.crop_offset),
        "full_shape": list(ref.full_shape),
        "shape": list(ref.image.shape),
        "std": ref.std,
        "mean": ref.mean,
        "seconds": elapsed,
        "input_bytes": int(raw.nbytes),
    }
    (refdir / "ref.json").write_text(json.dumps(meta))
    return meta


def report(results: list[dict[str, Any]], meta: dict[str, Any], bw: float, device: str) -> dict[str, Any]:
    mib = 2**20
    print(
        f"\ninput {meta['input_bytes'] / mib:.0f} MiB int16; resampled grid {meta['full_shape']} (z, y, x); "
        f"cropped output {meta['shape']}; float64 NumPy reference took {meta['seconds']:.1f} s"
    )
    cols = ("median s", 9), ("Mvox/s", 8), ("peak extra MiB", 15), ("x output", 9), ("max|d| HU", 10)
    head = f"{'method':<52} " + " ".join(f"{name:>{width}}" for name, width in cols)
    print(head)
    print("-" * len(head))
    by = {r["method"]: r for r in results}
    for r in results:
        label = LABELS.get(r["method"], r["method"])
        if "error" in r:
            print(f"{label:<52} unavailable: {r['error']}")
            continue
        print(
            f"{label:<52} {r['median_s']:>9.4f} {r['voxels_per_s'] / 1e6:>8.0f} "
            f"{r['peak_extra_bytes'] / mib:>15.0f} {r['peak_extra_bytes'] / r['output_bytes']:>9.2f} "
            f"{r['max_abs_diff_hu']:>10.2e}"
        )
    ours = by.get("tre-cuda" if device == "cuda" else "tre")
    summary: dict[str, Any] = {"results": results, "reference": meta, "copy_bandwidth_gbps": bw / 1e9}
    if ours and "error" not in ours:
        print()
        for name, target in (("sitk", 15.0), ("monai", 40.0), ("scipy", None)):
            other = by.get(name)
            if other and "error" not in other:
                ratio = other["median_s"] / ours["median_s"]
                goal = (
                    f" (target >= {target:.0f}x: {'met' if ratio >= target else 'NOT met'})" if target else ""
                )
                print(f"speed-up vs {LABELS[name]}: {ratio:.1f}x{goal}")
                summary[f"speedup_vs_{name}"] = ratio
        print(
            f"accuracy: max |diff| {ours['max_abs_diff_hu']:.2e} HU (target <= 1e-3: "
            f"{'met' if ours['max_abs_diff_hu'] <= 1e-3 else 'NOT met'})"
        )
        mem_ratio = ours["peak_extra_bytes"] / ours["output_bytes"]
        if device == "cpu":
            print(
                f"peak extra memory: {mem_ratio:.2f}x the output (target <= 1.5x: "
                f"{'met' if mem_ratio <= 1.5 else 'NOT met'})"
            )
        moved = meta["input_bytes"] + ours["output_bytes"]
        bound = moved / bw
        if device == "cpu":
            print(
                f"memory-bandwidth bound: {moved / mib:.0f} MiB moved (read input once, write output once) / "
                f"{bw / 1e9:.1f} GB/s (faster of 1-thread and all-thread copy) = {bound * 1e3:.1f} ms; "
                f"kernel {ours['median_s'] * 1e3:.1f} ms = "
                f"{ours['median_s'] / bound:.1f}x the bound"
            )
        summary["bandwidth_bound_s"] = bound
        if device == "cuda":
            total = ours["median_s"]
            print(
                f"GPU ({ours.get('gpu')}): {total * 1e3:.2f} ms per volume including transfers "
                f"(target <= 10 ms: {'met' if total <= 0.010 else 'NOT met'}); "
                f"H2D {ours['h2d_s'] * 1e3:.2f} ms ({ours['h2d_gbps']:.1f} GB/s), "
                f"D2H {ours['d2h_s'] * 1e3:.2f} ms ({ours['d2h_gbps']:.1f} GB/s), "
                f"compute ~{(total - ours['h2d_s'] - ours['d2h_s']) * 1e3:.2f} ms"
            )
            link = meta["input_bytes"] / (ours["h2d_gbps"] * 1e9) + ours["output_bytes"] / (
                ours["d2h_gbps"] * 1e9
            )
            hbm = moved / (ours["d2d_gbps"] * 1e9)
            compute = max(total - ours["h2d_s"] - ours["d2h_s"], 0.0)
            print(
                f"GPU bounds: PCIe transfers alone {link * 1e3:.2f} ms; on-device traffic "
                f"{moved / mib:.0f} MiB / {ours['d2d_gbps']:.0f} GB/s device copy = {hbm * 1e3:.3f} ms "
                f"vs compute ~{compute * 1e3:.2f} ms"
            )
            print(f"GPU passes of the last run (s): {ours.get('last_run_passes_s')}")
            summary["gpu_link_bound_s"] = link
            summary["gpu_hbm_bound_s"] = hbm
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256x256x150 volume, 3 repeats")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--methods", nargs="*", default=None, help=f"subset of {CPU_METHODS}")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per method")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--refdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    if args.worker:
        print(json.dumps(worker(args.worker, args.quick, repeats, args.refdir)))
        return 0
    methods = args.methods or (["tre-cuda", "tre"] if args.device == "cuda" else CPU_METHODS)
    print(
        f"cores: {os.cpu_count()}; volume {volume_shape(args.quick)} (z, y, x) int16, spacing "
        f"{SPACING_ZYX} -> {TARGET_ZYX} mm; window {WINDOW}; fg HU > {FG_HU}; {repeats} timed runs each"
    )
    bw = copy_bandwidth()
    with tempfile.TemporaryDirectory(prefix="bench_pre_") as tmp:
        refdir = Path(tmp)
        meta = build_reference(args.quick, refdir)
        results = []
        for m in methods:
            print(f"running {m} ...", flush=True)
            results.append(run_child(m, args.quick, repeats, refdir, args.timeout))
    summary = report(results, meta, bw, args.device)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
