"""Benchmark: a cohort of thousands of tiny series (issue 13, seventh round).

EUCAIM collections hold thousands of series; what scales with their number rather than
their size (discovery, the resume check, the manifest, progress lines) shows on tiny ones.
The cohort is --series series of 3 slices of 16x16 (one file written with pydicom, copied
with new UIDs and positions), optionally with one large series among them (--big). Runs
``python -m tre.kernels.job`` over it and prints:

* total time, series/s and per-series overhead (wall time / series);
* peak RSS of the job (ru_maxrss of its process tree);
* the job log's size and lines (the screened log is cut at the policy's per-job budget,
  256 KiB by default: the whole log, final line included, must stay well below it);
* a resume after SIGKILL half-way (time of the rerun, series resumed) and the rerun of the
  finished cohort (all resumed: the resume check alone).

    PYTHONPATH=. python benchmarks/bench_cohort_scale.py --series 2000
    PYTHONPATH=. python benchmarks/bench_cohort_scale.py --series 500 --big 512x512x200
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
LOG_BUDGET = 256 * 1024  # tre.policy JobPolicy.researcher_log_limit_kib default


def _template(rows: int, cols: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.9", "0.9"]
    ds.SliceThickness = "2"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = "1"
    ds.RescaleIntercept = "-1024"
    return ds


def write_cohort(root: Path, series: int, big: tuple[int, int, int] | None) -> int:
    """``series`` series of 3 x 16 x 16 (plus one of ``big`` z, y, x); returns files written."""
    rng = np.random.default_rng(0)
    files = 0
    specs = [(3, 16, 16)] * series + ([big] if big else [])
    for i, (nz, ny, nx) in enumerate(specs):
        ds = _template(ny, nx)
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.99.{i + 1}"
        folder = root / f"p{i // 100:03d}" / f"s{i:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(nz):
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = ["-7", "-7", f"{2.0 * k:g}"]
            body = rng.integers(900, 1200, (ny, nx), dtype=np.int16)
            body[: ny // 4] = 0  # air: a crop to do
            ds.PixelData = body.tobytes()
            ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
            files += 1
    return files


def _job(inp: Path, out: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tre.kernels.job",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--spacing",
        "1",
        "1",
        "2",
        "--window",
        "-1000",
        "400",
        "--format",
        "nii",
        "--workers",
        str(workers),
    ]


def run_job(cmd: list[str], kill_after: int | None = None) -> tuple[float, str, int]:
    """(wall seconds, stdout, exit status); SIGKILL once ``kill_after`` series are done."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if kill_after is not None and line.startswith("tre-progress: "):
            done = int(line.split()[1].split("/")[0])
            if done >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.read()
    return time.perf_counter() - t0, "".join(lines), proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--big", help="one more series of ZxYxX, e.g. 200x512x512")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/tre-bench-cohort-scale"))
    a = ap.parse_args()
    big = tuple(int(v) for v in a.big.split("x")) if a.big else None
    inp = a.workdir / f"in-{a.series}{'-big' if big else ''}"
    if not inp.is_dir():
        t0 = time.perf_counter()
        n = write_cohort(inp, a.series, big)  # type: ignore[arg-type]
        print(f"wrote {n} files in {time.perf_counter() - t0:.1f} s")
    out = a.workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    total = a.series + (1 if big else 0)

    wall, log, rc = run_job(_job(inp, out, a.workers))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines = log.splitlines()
    print(
        f"cohort: {total} series, exit {rc}, {wall:.1f} s, {total / wall:.1f} series/s, "
        f"{1000 * wall / total:.1f} ms/series, peak RSS {rss:.0f} MiB"
    )
    print(
        f"log: {len(log.encode())} bytes in {len(lines)} lines "
        f"({len(log.encode()) / LOG_BUDGET:.3f} of the 256 KiB per-job budget); "
        f"last line: {lines[-1] if lines else ''}"
    )

    again, log2, rc2 = run_job(_job(inp, out, a.workers))
    print(f"rerun of the finished cohort (all resumed): {again:.1f} s, exit {rc2}: {log2.splitlines()[-1]}")

    shutil.rmtree(out, ignore_errors=True)
    killed, _, _ = run_job(_job(inp, out, a.workers), kill_after=total // 2)
    resumed, log3, rc3 = run_job(_job(inp, out, a.workers))
    print(
        f"killed after {killed:.1f} s (half the cohort); resume: {resumed:.1f} s, exit {rc3}: "
        f"{log3.splitlines()[-1]}"
    )
    print(f"ratio resume / full run: {resumed / wall:.2f}")


if __name__ == "__main__":
    main()
