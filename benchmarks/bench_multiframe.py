"""An enhanced multi-frame series against the same series as one slice per file (issue 13).

Writes one CT volume (512x512xN by default) twice per codec -- classic, one file per slice,
and one Enhanced CT multi-frame file with the geometry in its functional groups and the
frames stored in shuffled order -- then times, alternating the two, what the cohort job does
before the kernels: discovery (header parsing into `SliceHeader` records) and loading (pixels
into the volume on a thread pool of ``--workers``). Prints wall and CPU seconds (medians) and
the ratio enhanced / classic, and checks both volumes are identical. With ``--job``, also the
whole job (``python -m tre.kernels.job``, 1 mm iso, CT window, ``--format nii``) on each
folder, wall seconds, with its output checked byte for byte against the classic one.

    PYTHONPATH=. python benchmarks/bench_multiframe.py [--slices 150] [--codecs raw jls rle j2k] [--job]

Wall times are page-cache reads (the files were just written); on a shared machine the
ratios are what carries over.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.kernels.synth import compress_files, write_enhanced, write_series  # noqa: E402
from tre.kernels.dicom import discover_headers, load_series  # noqa: E402

CODECS = {"raw": None, "jls": JPEGLSLossless, "rle": RLELossless, "j2k": JPEG2000Lossless}
SPACING = (1.25, 0.7, 0.7)


def phantom(nz: int, ny: int, nx: int) -> np.ndarray:
    """CT-like stored values (intercept -1024): a body ellipse with noise, slice by slice."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[-1 : 1 : ny * 1j, -1 : 1 : nx * 1j]
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    out = np.empty((nz, ny, nx), np.int16)
    for k in range(nz):
        hu = np.where(body, 40.0 + 30.0 * k / nz, -1000.0) + rng.normal(0, 20, (ny, nx))
        out[k] = np.clip(np.round(hu + 1024), -2000, 4000)
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def run_job(folder: Path, out: Path, workers: int) -> float:
    """Wall seconds of the cohort job on ``folder`` (outputs under ``out``, replaced)."""
    cmd = [sys.executable, "-m", "tre.kernels.job", "--input", str(folder), "--output", str(out)]
    cmd += [
        "--spacing",
        "1",
        "1",
        "1",
        "--window",
        "-1000",
        "400",
        "--format",
        "nii",
        "--workers",
        str(workers),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for old in out.glob("*") if out.exists() else []:
        old.unlink()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=REPO)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=150)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--codecs", nargs="+", default=["raw", "jls", "rle"], choices=list(CODECS))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--job", action="store_true", help="also time the whole job on each folder")
    args = ap.parse_args()
    raw = phantom(args.slices, args.size, args.size)
    order = [int(i) for i in np.random.default_rng(1).permutation(args.slices)]
    mb = raw.nbytes / 1e6
    shape = f"{args.size}x{args.size}x{args.slices}"
    print(f"volume {shape} int16 ({mb:.0f} MB), {args.workers} threads, medians of {args.repeat}")
    print("codec | stage | classic wall / CPU s | enhanced wall / CPU s | enhanced / classic (wall, CPU)")
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.workers) as pool:
        for name in args.codecs:
            ts = CODECS[name]
            classic_dir, enhanced_dir = Path(tmp) / f"{name}-classic", Path(tmp) / f"{name}-enhanced"
            paths = write_series(classic_dir, raw, spacing_zyx=SPACING)
            if ts is not None:
                compress_files(paths, ts)
            write_enhanced(
                enhanced_dir / "mf.dcm", raw, spacing_zyx=SPACING, frame_order=order, transfer_syntax=ts
            )
            figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
            volumes = {}
            for _ in range(args.repeat):
                for kind, folder in (("classic", classic_dir), ("enhanced", enhanced_dir)):
                    groups, w, c = timed(lambda folder=folder: discover_headers(folder))
                    figures.setdefault((kind, "headers"), []).append((w, c))
                    (heads,) = groups.values()
                    series, w, c = timed(lambda heads=heads: load_series(heads, pool=pool))
                    figures.setdefault((kind, "load"), []).append((w, c))
                    volumes[kind] = series.raw
                    del series
            assert np.array_equal(volumes["classic"], volumes["enhanced"]), name
            if args.job:
                run_job(classic_dir, Path(tmp) / "warm", args.workers)  # the Numba cache, once
                walls: dict[str, list[float]] = {"classic": [], "enhanced": []}
                for _ in range(args.repeat):
                    for kind, folder in (("classic", classic_dir), ("enhanced", enhanced_dir)):
                        walls[kind].append(run_job(folder, Path(tmp) / f"out-{kind}", args.workers))
                (a,) = (Path(tmp) / "out-classic").glob("*.nii")
                (b,) = (Path(tmp) / "out-enhanced").glob("*.nii")
                assert a.read_bytes() == b.read_bytes(), name
                cw, ew = statistics.median(walls["classic"]), statistics.median(walls["enhanced"])
                print(f"{name} | job | {cw:.3f} / - | {ew:.3f} / - | {ew / cw:.2f}x, - (outputs identical)")
            for stage in ("headers", "load"):
                cw, cc = (statistics.median(v) for v in zip(*figures[("classic", stage)], strict=True))
                ew, ec = (statistics.median(v) for v in zip(*figures[("enhanced", stage)], strict=True))
                print(
                    f"{name} | {stage} | {cw:.3f} / {cc:.3f} | {ew:.3f} / {ec:.3f} | "
                    f"{ew / cw:.2f}x, {ec / max(cc, 1e-9):.2f}x"
                )
    print("volumes identical: yes")


if __name__ == "__main__":
    main()
