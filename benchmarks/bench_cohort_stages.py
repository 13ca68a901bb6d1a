"""Where a cohort job's CPU goes, stage by stage, per codec (issue 13, item 1).

Runs each stage of the cohort job on one thread, in one process, over the series of a
``bench_cohort.py`` cohort folder and prints CPU seconds (``time.process_time``, this
process only: no worker processes are used here) per series and per slice:

* ``headers``: pydicom header parsing up to Pixel Data (what ``load_series`` does first);
* ``pixels fast``: reading + decoding the pixels into the volume with `tre.kernels.decode`
  (imagecodecs: OpenJPEG, CharLS) or the native ``readinto`` for uncompressed slices;
* ``pixels pydicom``: the same slices through pydicom's pixel handlers (a full ``dcmread``
  per slice, the plugin the loader prefers), i.e. the path before the fast decoder;
* ``kernels``: `preprocess_array` (the Numba passes; one call warms the cache first);
* ``write nii.gz`` / ``write nii``: `write_volume` with the job's compressor, SHA-256 included;
* ``sha256``: hashing the ``.nii`` output alone (part of the write figure).

    PYTHONPATH=. python benchmarks/bench_cohort_stages.py /tmp/tre-bench-cohort/cohort/view-n4-all

Run it on an otherwise idle machine for absolute figures; on a shared one the per-slice
ratios between stages are what carries over.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pydicom

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tre.kernels import dicom  # noqa: E402
from tre.kernels.nifti import output_affine  # noqa: E402
from tre.kernels.params import PreprocessParams  # noqa: E402
from tre.kernels.pipeline import preprocess_array  # noqa: E402
from tre.kernels.warm import warm_kernels  # noqa: E402
from tre.kernels.writers import write_volume  # noqa: E402

CODEC_NAMES = {
    "1.2.840.10008.1.2.1": "raw",
    "1.2.840.10008.1.2.4.90": "j2k",
    "1.2.840.10008.1.2.4.80": "jls",
    "1.2.840.10008.1.2.4.70": "ljpeg",
    "1.2.840.10008.1.2.5": "rle",
}


def cpu(fn, *args):  # type: ignore[no-untyped-def]
    c0 = time.process_time()
    out = fn(*args)
    return out, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cohort", type=Path)
    args = ap.parse_args()
    params = PreprocessParams(spacing=(1.0, 1.0, 1.0), window=(-1000.0, 400.0))
    warm_kernels(params, "cpu")
    groups = dicom.discover_series(args.cohort)
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    slices: dict[str, int] = defaultdict(int)
    out = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    try:
        for _uid, files in groups.items():
            ts = str(pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID)
            codec = CODEC_NAMES.get(ts, ts)
            row = table[codec]
            slices[codec] += len(files)
            _, t = cpu(lambda fs=files: [dicom._read_header(Path(f)) for f in fs])
            row["headers"] += t
            series, t = cpu(dicom.load_series, files)
            row["load (headers + pixels fast)"] += t
            _, t = cpu(lambda fs=files: [dicom._decode_file(Path(f)) for f in fs])
            row["pixels pydicom (full dcmread + plugin)"] += t
            s = series
            result, t = cpu(preprocess_array, s.raw, s.slopes, s.intercepts, s.spacing, params, "cpu")
            row["kernels"] += t
            affine = output_affine(s, params.spacing, result.crop_offset)
            for fmt in ("nii.gz", "nii"):
                _, t = cpu(write_volume, out, "v", result.image, affine, fmt, 1)
                row[f"write {fmt} (1 thread, hashed)"] += t
            data = (out / "v.nii").read_bytes()
            _, t = cpu(lambda b=data: hashlib.sha256(b).hexdigest())
            row["sha256 of the .nii"] += t
            row["_out_mb"] += len(data) / 1e6
            print(f"  {codec}: {len(files)} slices done", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print("\nCPU seconds per slice (ms) by stage and codec, one thread:")
    for codec, row in table.items():
        n = slices[codec]
        row["pixels fast"] = row["load (headers + pixels fast)"] - row["headers"]
        print(f"{codec} ({n} slices, {row['_out_mb']:.0f} MB of .nii out):")
        for k, v in row.items():
            if not k.startswith("_"):
                print(f"  {k:45s} {1000 * v / n:7.2f} ms/slice  {v:7.2f} s")


if __name__ == "__main__":
    main()
