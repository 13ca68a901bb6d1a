"""Benchmark: a whole cohort from DICOM on disk to outputs on disk (issue 13).

A synthetic cohort of chest-like CT series (default 40 series of 512x512x150-300 at
0.7 x 0.7 x 2.5 mm; a quarter stored as JPEG 2000 lossless and a quarter as JPEG-LS
lossless) is written as DICOM files once (cached in --workdir). The same recipe (-> 1 mm
isotropic trilinear, window [-1000, 400] -> [0, 1], z-score over the resampled grid, crop to
HU > -500) then runs end to end, each method in its own process, each writing its outputs:

* ``tre``: ``python -m tre.kernels.job`` (the cohort job) writing ``.nii.gz``; and
  ``tre-nii`` the same writing uncompressed ``.nii`` (the disk-bound case); ``tre-zarr`` the
  same writing ``.zarr.zip`` (Zarr v3, Blosc chunks, for training loaders);
* ``tre-i16``, ``tre-nii-i16``, ``tre-zarr-i16``: the same three with ``--dtype int16``
  (quantised: scaled int16 within 1e-3 of the float32 output after decoding; opt-in rows,
  not the float32 headline);
* ``monai``: LoadImage(PydicomReader) -> Spacing -> ScaleIntensityRange ->
  NormalizeIntensity -> CropForeground (box of the windowed image) -> SaveImage(.nii.gz);
* ``sitk``: ImageSeriesReader -> Resample -> IntensityWindowing -> Normalize -> crop ->
  WriteImage(.nii.gz).

Printed: series/min, s/series, peak RSS of the process (ru_maxrss), ratios against tre, and
the largest difference between each baseline's outputs and tre's (z-score units, over the
voxels both outputs cover, after reading them back). Disk: sequential write (with fsync) and
read (after evicting the file from the page cache) rates of --workdir, and the whole job
compared with the time to read the cohort's input bytes and write its output bytes at them.

    PYTHONPATH=. python benchmarks/bench_cohort.py --quick            # 6 series 256x256, ~2 min
    PYTHONPATH=. python benchmarks/bench_cohort.py                    # 40 series, long
    PYTHONPATH=. python benchmarks/bench_cohort.py --series 12 --methods tre tre-nii sitk

Needs the ``bench`` extra for the baselines (``pip install -e .[bench]``) and the ``kernels``
extra (pylibjpeg-openjpeg and pyjpegls also encode the compressed part of the cohort).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_preprocess import INTERCEPT, chest_phantom  # noqa: E402

WINDOW = (-1000.0, 400.0)
FG_HU = -500.0
SPACING_XY = 0.7
SPACING_Z = 2.5
METHODS = ["tre", "tre-nii", "tre-zarr", "monai", "sitk"]
# Quantised outputs (``--dtype int16``, `tre.kernels.quantise`, max error QUANT_MAX_ERROR after
# decoding): extra rows, never the headline; the float32 rows above are what the targets are
# claimed with.
QUANT_METHODS = ["tre-i16", "tre-nii-i16", "tre-zarr-i16"]
QUANT_MAX_ERROR = 1e-3
# On a machine with an NVIDIA GPU (issue 13, goal 5): the same job with the CUDA kernels
# (decoding and writing stay on the CPU threads; transfers and kernels overlap them).
GPU_METHODS = ["tre-cuda", "tre-cuda-nii"]
# The recipe every method runs, as `python -m tre.kernels.job` takes it (1 mm iso, WINDOW).
TRE_RECIPE_ARGS = ["--spacing", "1", "1", "1", "--window", "-1000", "400"]


# ------------------------------------------------------------------------------- cohort


def cohort_plan(n: int, quick: bool, seed: int = 13) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    size = 256 if quick else 512
    lo, hi = (60, 120) if quick else (150, 300)
    codecs = ["raw", "j2k", "raw", "jls"]
    return [
        {
            "uid": f"1.2.826.0.1.3680043.10.1013.{i + 1}",
            "nz": int(rng.integers(lo, hi + 1)),
            "size": size,
            "codec": codecs[i % 4],
        }
        for i in range(n)
    ]


def write_cohort(root: Path, plan: list[dict[str, Any]]) -> None:
    """One folder per series; skipped when a previous run left the same plan there."""
    import pydicom  # noqa: F401 - fail early without it
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless

    stamp = root / "plan.json"
    if stamp.exists() and json.loads(stamp.read_text()) == plan:
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    for i, s in enumerate(plan):
        raw = chest_phantom((s["nz"], s["size"], s["size"]), seed=i)
        folder = root / f"series{i:03d}"
        folder.mkdir()
        for k in range(s["nz"]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = f"{s['uid']}.{k + 1}"
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.Modality = "CT"
            ds.StudyInstanceUID = s["uid"] + ".0"
            ds.SeriesInstanceUID = s["uid"]
            ds.InstanceNumber = k + 1
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
            ds.ImagePositionPatient = ["-179.3", "-200.1", f"{-300 + k * SPACING_Z:.2f}"]
            ds.PixelSpacing = [str(SPACING_XY), str(SPACING_XY)]
            ds.SliceThickness = str(SPACING_Z)
            ds.Rows = ds.Columns = s["size"]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleSlope = "1"
            ds.RescaleIntercept = str(int(INTERCEPT))
            ds.PixelData = np.ascontiguousarray(raw[k], dtype="<i2").tobytes()
            if s["codec"] == "j2k":
                ds.compress(JPEG2000Lossless)
            elif s["codec"] == "jls":
                ds.compress(JPEGLSLossless)
            ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
        print(f"  wrote series {i + 1}/{len(plan)} ({s['codec']}, {s['nz']} slices)", flush=True)
    stamp.write_text(json.dumps(plan))
    print(f"cohort written in {time.perf_counter() - t0:.0f} s", flush=True)


def tree_bytes(root: Path, suffix: str = "") -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name.endswith(suffix))


# --------------------------------------------------------------------------------- disk


def disk_rates(workdir: Path, mib: int = 1024) -> tuple[float, float]:
    """Sequential write (fsync) and cold read rates in bytes/s of the disk under ``workdir``."""
    path = workdir / "disk-probe.bin"
    block = np.random.default_rng(0).integers(0, 255, size=1 << 24, dtype=np.uint8).tobytes()
    n = max(1, mib // 16)
    t0 = time.perf_counter()
    with path.open("wb") as fh:
        for _ in range(n):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    write = n * len(block) / (time.perf_counter() - t0)
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    t0 = time.perf_counter()
    with path.open("rb", buffering=0) as fh:
        while fh.read(1 << 24):
            pass
    read = n * len(block) / (time.perf_counter() - t0)
    path.unlink()
    return write, read


def dd_baseline(cohort: Path, out_bytes: int, workdir: Path) -> tuple[float, float]:
    """Seconds to move this method's bytes at the disk's rate, dd-like: read every input file
    raw after evicting it from the page cache (1 MiB reads, no parsing), then write
    ``out_bytes`` of incompressible data in 4 MiB blocks and fsync. Measured right after the
    method ran, so both see the same load."""
    files = sorted(p for p in cohort.rglob("*.dcm"))
    evict(cohort)
    buf = bytearray(1 << 20)
    t0 = time.perf_counter()
    for f in files:
        with f.open("rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    read_s = time.perf_counter() - t0
    block = np.random.default_rng(1).integers(0, 255, size=1 << 22, dtype=np.uint8).tobytes()
    path = workdir / "dd-probe.bin"
    t0 = time.perf_counter()
    with path.open("wb") as fh:
        left = out_bytes
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= len(block)
        fh.flush()
        os.fsync(fh.fileno())
    write_s = time.perf_counter() - t0
    path.unlink()
    return read_s, write_s


def flush_tree(root: Path) -> float:
    """fsync every file a method wrote; seconds taken. Counted in the method's wall time so
    that it and the dd-like baseline (which fsyncs its write) both end with data on the disk."""
    t0 = time.perf_counter()
    for p in root.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    dfd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return time.perf_counter() - t0


def evict(root: Path) -> None:
    """Drop the cohort's files from the page cache so every method reads from the disk."""
    for p in root.rglob("*.dcm"):
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


# ------------------------------------------------------------------------------ methods


def series_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def grid_len(n: int, spacing: float, target: float = 1.0) -> int:
    return int(np.floor((n - 1) * spacing / target + 1e-6)) + 1


def run_monai(cohort: Path, out: Path) -> None:
    import torch
    from monai.data import PydicomReader
    from monai.transforms import (
        CropForeground,
        LoadImage,
        NormalizeIntensity,
        SaveImage,
        ScaleIntensityRange,
        Spacing,
        SpatialCrop,
    )

    torch.set_num_threads(os.cpu_count() or 1)
    lo, hi = WINDOW
    thr = (FG_HU - lo) / (hi - lo)
    load = LoadImage(reader=PydicomReader(), image_only=True, ensure_channel_first=True)
    spacing = Spacing(pixdim=(1.0, 1.0, 1.0), mode="bilinear", padding_mode="border", dtype=torch.float32)
    window = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
    norm = NormalizeIntensity()
    save = SaveImage(output_dir=str(out), output_ext=".nii.gz", separate_folder=False, print_log=False)
    for folder in series_dirs(cohort):
        img = load(str(folder))
        pix = [float(v) for v in img.pixdim[:3]]
        shape = [grid_len(int(n), s) for n, s in zip(img.shape[1:], pix, strict=True)]
        img = spacing(img.to(torch.float32), output_spatial_shape=shape)  # tre's grid (no extra voxel)
        img = window(img)
        start, end = CropForeground(select_fn=lambda x: x > thr, allow_smaller=True).compute_bounding_box(img)
        img = SpatialCrop(roi_start=start, roi_end=end)(norm(img))
        img.meta["filename_or_obj"] = folder.name
        save(img)


def run_sitk(cohort: Path, out: Path) -> None:
    import SimpleITK as sitk

    lo, hi = WINDOW
    for folder in series_dirs(cohort):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        img = reader.Execute()
        size = [grid_len(n, s) for n, s in zip(img.GetSize(), img.GetSpacing(), strict=True)]
        rs = sitk.ResampleImageFilter()
        rs.SetOutputSpacing((1.0, 1.0, 1.0))
        rs.SetSize(size)
        rs.SetOutputOrigin(img.GetOrigin())
        rs.SetOutputDirection(img.GetDirection())
        rs.SetInterpolator(sitk.sitkLinear)
        rs.SetOutputPixelType(sitk.sitkFloat32)
        hu = rs.Execute(img)
        fg = sitk.BinaryThreshold(
            hu, lowerThreshold=FG_HU, upperThreshold=1e30, insideValue=1, outsideValue=0
        )
        # "> -500": BinaryThreshold is inclusive, nudge by the float32 step at 500
        fg = sitk.And(fg, sitk.Not(sitk.BinaryThreshold(hu, FG_HU, FG_HU, 1, 0)))
        v = sitk.IntensityWindowing(hu, lo, hi, 0.0, 1.0)
        v = sitk.Cast(sitk.Normalize(v), sitk.sitkFloat32)
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(fg)
        x0, y0, z0, nx, ny, nz = stats.GetBoundingBox(1)
        v = sitk.RegionOfInterest(v, [nx, ny, nz], [x0, y0, z0])
        sitk.WriteImage(v, str(out / f"{folder.name}.nii.gz"))


def child(method: str, cohort: Path, out: Path, workers: int, timeline: Path | None = None) -> None:
    if method == "monai":
        run_monai(cohort, out)
    elif method == "sitk":
        run_sitk(cohort, out)
    else:
        from tre.kernels.job import main as run  # the process entry point, as the sandbox runs it

        base = method.removesuffix("-i16")
        fmt = {"tre-nii": "nii", "tre-zarr": "zarr", "tre-cuda-nii": "nii"}.get(base, "nii.gz")
        args = ["--input", str(cohort), "--output", str(out), *TRE_RECIPE_ARGS]
        args += ["--timeline", str(timeline)] if timeline else []
        args += ["--device", "cuda"] if method.startswith("tre-cuda") else []
        args += ["--dtype", "int16", "--max-error", str(QUANT_MAX_ERROR)] if method.endswith("-i16") else []
        code = run([*args, "--format", fmt, "--workers", str(workers)])
        if code:
            raise SystemExit(code)


def run_method(
    method: str, cohort: Path, out: Path, workers: int, timeout: int, timeline: Path | None = None
) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    evict(cohort)
    cmd = [sys.executable, __file__, "--child", method, "--cohort", str(cohort), "--out", str(out)]
    cmd += ["--workers", str(workers)]
    if timeline is not None and method.startswith("tre"):
        cmd += ["--timeline", str(timeline)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"method": method, "error": f"timed out after {timeout} s"}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and its worker processes
    flush_s = flush_tree(out)  # on the disk, as the dd-like baseline's fsync'd write is
    wall = time.perf_counter() - t0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        tail = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["no output"])[-1]
        return {"method": method, "error": tail[:300]}
    peak_kib = json.loads([ln for ln in stdout.splitlines() if ln.startswith("{")][-1])["peak_rss_kib"]
    return {
        "method": method,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": peak_kib / 1024,
        "out_bytes": tree_bytes(out),
        "flush_s": flush_s,
    }


# --------------------------------------------------------------------------- comparison


def canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.dataobj, dtype=np.float32).squeeze(), img.affine


def max_diff(a_path: Path, b_path: Path) -> float:
    """Max |a - b| over the voxels both cover (RAS-canonical arrays, offsets from affines)."""
    a, aa = canonical(a_path)
    b, ba = canonical(b_path)
    off = np.linalg.solve(aa, ba[:, 3])[:3]  # b's first voxel in a's index space
    o = np.round(off).astype(int)
    if np.max(np.abs(off - o)) > 1e-3 or not np.allclose(aa[:3, :3], ba[:3, :3], atol=1e-4):
        return float("nan")  # not the same grid
    lo_a = np.maximum(o, 0)
    hi_a = np.minimum(o + np.array(b.shape), np.array(a.shape))
    if np.any(hi_a <= lo_a):
        return float("nan")
    sa = tuple(slice(lo, hi) for lo, hi in zip(lo_a, hi_a, strict=True))
    sb = tuple(slice(lo - oo, hi - oo) for lo, hi, oo in zip(lo_a, hi_a, o, strict=True))
    return float(np.max(np.abs(a[sa].astype(np.float64) - b[sb])))


def tre_output(out: Path, uid: str, suffix: str) -> Path:
    """Where the tre job wrote series ``uid``: ``series/<pseudonym><suffix>``, the pseudonym
    read from its manifest (the only place that maps a series UID to its files)."""
    try:
        name = json.loads((out / "manifest.json").read_text())["series"][uid]["name"]
    except (OSError, ValueError, KeyError):
        return out / "series" / f"missing{suffix}"
    return out / "series" / f"{name}{suffix}"


def compare(plan: list[dict[str, Any]], cohort: Path, tre_out: Path, other_out: Path, method: str) -> float:
    worst = 0.0
    for s in plan:
        mine = tre_output(tre_out, s["uid"], ".nii.gz")
        if method == "monai":
            theirs = next(iter(other_out.glob(f"{s['folder']}*.nii.gz")), None)
        else:
            theirs = other_out / f"{s['folder']}.nii.gz"
        if theirs is None or not theirs.exists() or not mine.exists():
            return float("nan")
        worst = max(worst, max_diff(mine, theirs))
    return worst


def select_cohort(workdir: Path, quick: bool, n: int, codec: str | None) -> tuple[Path, list[dict[str, Any]]]:
    """The cohort folder for the first ``n`` series of the plan (only ``codec`` ones if given).

    Series are written once into the full plan's folder (``cohort/n40``) when it exists or
    is wanted, and a smaller or filtered cohort is a folder of hard links to its files, so the
    slow JPEG 2000 encoding is never repeated for a subset."""
    full_n = max(n, 6 if quick else 40)
    base = workdir / ("cohort-quick" if quick else "cohort")
    full_plan = cohort_plan(full_n, quick)
    for i, entry in enumerate(full_plan):
        entry["folder"] = f"series{i:03d}"
    full = base / f"n{full_n}"
    stamp = full / "plan.json"
    strip = [{k: v for k, v in e.items() if k != "folder"} for e in full_plan]
    have_full = stamp.exists() and json.loads(stamp.read_text()) == strip
    if not have_full and n == full_n:
        write_cohort(full, strip)
        have_full = True
    if not have_full:  # a small cohort on its own, as before
        full = base / f"n{n}"
        write_cohort(full, strip[:n])
    plan = [e for e in full_plan[:n] if codec is None or e["codec"] == codec]
    if len(plan) == full_n:
        return full, plan
    view = base / f"view-n{n}-{codec or 'all'}"
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for e in plan:  # hard links: the job's discovery does not follow symlinked folders
        (view / e["folder"]).mkdir()
        for f in (full / e["folder"]).iterdir():
            os.link(f, view / e["folder"] / f.name)
    return view, plan


# --------------------------------------------------------------------------------- main


def run_tre_warm(cohort: Path, workdir: Path, device: str = "cpu", dtype: str = "float32") -> None:
    """Compile or load the Numba cache once, untimed: the platform warms it when the job image
    is built (`tre admin warm-kernels`), so jobs never compile. ``dtype`` int16: the quantised
    methods' normalize pass, a kernel of its own (without this a quantised row after a source
    change timed its compilation: 38.9 s CPU against 25.2 s without)."""
    warm = workdir / f"warm-{device}-{dtype}"
    shutil.rmtree(warm, ignore_errors=True)
    first = series_dirs(cohort)[0]
    cmd = [sys.executable, "-m", "tre.kernels.job", "--input", str(first), "--output", str(warm)]
    cmd += ["--spacing", "1", "1", "1", "--window", "-1000", "400", "--device", device, "--dtype", dtype]
    subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True)


def summarise(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Medians over the repeats of one method (the mean of two runs), with the ranges."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    walls = [r["wall_s"] for r in ok]
    cpus = [r["cpu_s"] for r in ok]
    out = dict(ok[-1])
    wall = statistics.median(walls)
    out.update(
        runs=len(ok),
        wall_s=wall,
        cpu_s=statistics.median(cpus),
        peak_rss_mib=max(r["peak_rss_mib"] for r in ok),
        x_disk=statistics.median(r["x_disk"] for r in ok),
        wall_range=[min(walls), max(walls)],
        cpu_range=[min(cpus), max(cpus)],
        s_per_series=wall / n,
        series_per_min=60 * n / wall,
        x_disk_range=[min(r["x_disk"] for r in ok), max(r["x_disk"] for r in ok)],
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="6 series of 256x256x60-120")
    ap.add_argument("--codec", choices=["raw", "j2k", "jls"], help="only this codec's series of the plan")
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS + QUANT_METHODS + GPU_METHODS)
    ap.add_argument("--repeat", type=int, default=1, help="runs per method, interleaved (A B A B ...)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tre-bench-cohort")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=7200)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--timelines",
        type=Path,
        help="folder for the tre jobs' timelines (METHOD-RUN.jsonl; see tre.kernels.timeline)",
    )
    ap.add_argument("--timeline", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cohort", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.cohort, args.out, args.workers, args.timeline)
        print(json.dumps({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    cohort, plan = select_cohort(
        args.workdir, args.quick, args.series or (6 if args.quick else 40), args.codec
    )
    n = len(plan)
    print(
        f"cohort: {n} series, {plan[0]['size']}^2 x {min(s['nz'] for s in plan)}-"
        f"{max(s['nz'] for s in plan)} slices, codecs {sorted({s['codec'] for s in plan})}",
        flush=True,
    )
    in_bytes = tree_bytes(cohort, ".dcm")
    w_rate, r_rate = disk_rates(args.workdir)
    print(
        f"disk: write {w_rate / 1e6:.0f} MB/s (fsync), cold read {r_rate / 1e6:.0f} MB/s; "
        f"input {in_bytes / 1e6:.0f} MB in {sum(s['nz'] for s in plan)} files; "
        f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} (shared)",
        flush=True,
    )
    if any(m.startswith("tre") for m in args.methods):
        run_tre_warm(cohort, args.workdir)
    if any(m in QUANT_METHODS for m in args.methods):
        run_tre_warm(cohort, args.workdir, dtype="int16")
    if any(m.startswith("tre-cuda") for m in args.methods):
        run_tre_warm(cohort, args.workdir, "cuda")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    for rep in range(args.repeat):
        for m in args.methods:
            tl = None
            if args.timelines is not None:
                args.timelines.mkdir(parents=True, exist_ok=True)
                tl = args.timelines / f"{m}-{rep + 1}.jsonl"
            r = run_method(m, cohort, args.workdir / f"out-{m}", args.workers, args.timeout, tl)
            r["load_avg"] = os.getloadavg()[0]
            runs[m].append(r)
            if "error" in r:
                print(f"  {m} #{rep + 1}: ERROR {r['error']}", flush=True)
                continue
            read_s, write_s = dd_baseline(cohort, r["out_bytes"], args.workdir)
            r["disk_read_s"], r["disk_write_s"] = read_s, write_s
            r["disk_s"] = read_s + write_s
            r["x_disk"] = r["wall_s"] / r["disk_s"]
            print(
                f"  {m} #{rep + 1}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
                f"{60 * n / r['wall_s']:.1f} series/min, out {r['out_bytes'] / 1e6:.0f} MB "
                f"(fsync {r['flush_s']:.1f} s, in the wall time); "
                f"dd-like read {read_s:.1f} s + write {write_s:.1f} s (fsync): "
                f"{r['x_disk']:.1f}x the disk; "
                f"load {r['load_avg']:.1f}",
                flush=True,
            )
    results = {m: summarise(rs, n) for m, rs in runs.items()}
    base = results.get("tre", {})
    print(
        "\nmethod     s/series  series/min  wall s (range)      CPU s (range)       peak RSS*"
        "  x tre (wall)  x tre (CPU)  x disk (range)     max diff vs tre"
    )
    for m, r in results.items():
        if "error" in r:
            continue
        ratio = r["wall_s"] / base["wall_s"] if "wall_s" in base else float("nan")
        cpu_ratio = r["cpu_s"] / base["cpu_s"] if "cpu_s" in base else float("nan")
        diff = float("nan")
        if m in ("monai", "sitk") and "wall_s" in base:
            diff = compare(plan, cohort, args.workdir / "out-tre", args.workdir / f"out-{m}", m)
        elif m in ("tre-nii", "tre-zarr", "tre-cuda-nii", *QUANT_METHODS) and "wall_s" in base:
            diff = compare_formats(plan, args.workdir / "out-tre", args.workdir / f"out-{m}")
        elif m == "tre-cuda" and "wall_s" in base:
            diff = compare_formats(plan, args.workdir / "out-tre", args.workdir / "out-tre-cuda")
        r["ratio_to_tre"] = ratio
        r["cpu_ratio_to_tre"] = cpu_ratio
        r["max_diff_vs_tre"] = diff
        label = f"{m} (quantised, bound {QUANT_MAX_ERROR:g})" if m in QUANT_METHODS else m
        print(
            f"{label:<10} {r['s_per_series']:8.2f}  {r['series_per_min']:10.1f}  "
            f"{r['wall_s']:6.1f} ({r['wall_range'][0]:.0f}-{r['wall_range'][1]:.0f})"
            f"  {r['cpu_s']:7.1f} ({r['cpu_range'][0]:.0f}-{r['cpu_range'][1]:.0f})"
            f"  {r['peak_rss_mib']:8.0f}M  {ratio:11.1f}x  {cpu_ratio:10.1f}x"
            f"  {r['x_disk']:5.1f}x ({r['x_disk_range'][0]:.1f}-{r['x_disk_range'][1]:.1f})  {diff:.2e}"
        )
    print(
        "* peak RSS of the method's main process (ru_maxrss, includes its imports; not the job's "
        "decode worker processes); CPU = user + sys of the process and its workers; wall includes "
        "fsync'ing the method's outputs after it exited; x disk = wall / "
        "(dd-like cold read of the input files + fsync'd write of the method's output bytes, measured "
        "right after it); targets: >= 10x MONAI, >= 5x SimpleITK, whole job <= 2x the disk time"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"plan": plan, "disk": [w_rate, r_rate], "results": results, "runs": runs}, indent=2)
        )


def compare_formats(plan: list[dict[str, Any]], gz: Path, other: Path) -> float:
    """Max |difference| between tre's .nii.gz outputs and its .nii or .zarr.zip ones (int16
    ones decoded: nibabel applies scl_slope / scl_inter, zarr's scale_factor / add_offset here)."""
    worst = 0.0
    for s in plan:
        a = tre_output(gz, s["uid"], ".nii.gz")
        nii, zipped = tre_output(other, s["uid"], ".nii"), tre_output(other, s["uid"], ".zarr.zip")
        other_gz = tre_output(other, s["uid"], ".nii.gz")  # the CUDA job's
        if not a.exists() or not (nii.exists() or zipped.exists() or other_gz.exists()):
            return float("nan")
        if nii.exists() or other_gz.exists():
            worst = max(worst, max_diff(a, nii if nii.exists() else other_gz))
            continue
        import nibabel as nib
        import zarr

        store = zarr.storage.ZipStore(str(zipped), mode="r")
        try:
            arr = zarr.open_array(store, mode="r")
            z = arr[...]
            attrs = dict(arr.attrs)
        finally:
            store.close()
        if "scale_factor" in attrs:  # an int16 output (CF scale_factor / add_offset)
            z = z.astype(np.float64) * attrs["scale_factor"] + attrs["add_offset"]
        x = np.asarray(nib.load(str(a)).dataobj, dtype=np.float32).transpose(2, 1, 0)  # z, y, x
        if x.shape != z.shape:
            return float("nan")
        worst = max(worst, float(np.max(np.abs(x - z))))
    return worst


if __name__ == "__main__":
    main()
