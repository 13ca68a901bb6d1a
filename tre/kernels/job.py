"""In-sandbox entry point of the built-in ``tre preprocess`` job.

    python -m tre.kernels.job --input /data --output /output --spacing 1 1 1 \
        --window -1000 400 [--percentile-clip 0.5 99.5] [--device cpu|cuda]

Loads every DICOM series under --input, preprocesses it and writes ``<series>.nii.gz`` and
``<series>.json`` under --output. Bad input (inconsistent series, missing PET tags, bad
arguments) ends the job with exit status 2 and one ``error: ...`` line on stderr: the job
log is all a researcher sees of data they may not inspect, so no tracebacks.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from importlib import metadata
from pathlib import Path

from tre.kernels.dicom import Series, discover_series, load_series
from tre.kernels.errors import KernelInputError
from tre.kernels.nifti import output_affine, sidecar, write_nifti, write_sidecar
from tre.kernels.params import PreprocessParams
from tre.kernels.pipeline import Device, preprocess_array
from tre.kernels.suv import to_suvbw

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tre.kernels.job", description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, required=True, help="folder searched recursively for DICOM")
    p.add_argument("--output", type=Path, required=True, help="folder for .nii.gz and .json outputs")
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        required=True,
        metavar=("X", "Y", "Z"),
        help="target voxel size in mm, NIfTI/ITK order (column, row, slice)",
    )
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), help="intensity window (HU for CT)")
    p.add_argument(
        "--percentile-clip", type=float, nargs=2, metavar=("PLO", "PHI"), help="nnU-Net style clip"
    )
    p.add_argument("--foreground-threshold", type=float, default=-500.0, help="foreground is value > this")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--suv",
        choices=["auto", "off"],
        default="auto",
        help="auto: PET series are converted to SUVbw (QIBA)",
    )
    p.add_argument("--skip-invalid", action="store_true", help="report bad series in skipped.json, go on")
    return p


def _versions(device: str) -> dict[str, str]:
    names = ["tre", "numpy", "numba", "pydicom", "nibabel"] + (["numba-cuda"] if device == "cuda" else [])
    out: dict[str, str] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _stem(uid: str) -> str:
    """File name for a series: its UID, restricted to a safe alphabet."""
    return re.sub(r"[^0-9A-Za-z._-]", "_", uid) or "series"


def process_series(
    series: Series, out_dir: Path, params: PreprocessParams, device: Device, suv: str
) -> dict[str, object]:
    """Preprocess one loaded series and write its two files; returns the sidecar."""
    units = "HU" if series.modality == "CT" else "stored value x rescale"
    factor: float | None = None
    if series.modality == "PT" and suv == "auto":
        series, factor = to_suvbw(series)
        units = "SUVbw (g/mL)"
    t0 = time.perf_counter()
    result = preprocess_array(series.raw, series.slopes, series.intercepts, series.spacing, params, device)
    t_pre = time.perf_counter() - t0
    stem = _stem(series.series_uid)
    t0 = time.perf_counter()
    write_nifti(
        out_dir / f"{stem}.nii.gz", result.image, output_affine(series, params.spacing, result.crop_offset)
    )
    timings = {"preprocess": t_pre, "write": time.perf_counter() - t0}
    timings.update({f"pass_{k}": v for k, v in result.timings_s.items()})
    data = sidecar(
        series,
        result,
        target_zyx=params.spacing,
        window=params.window,
        percentile_clip=params.percentile_clip,
        foreground_threshold=params.foreground_threshold,
        units=units,
        device=device,
        versions=_versions(device),
        timings_s=timings,
        suv_factor=factor,
    )
    write_sidecar(out_dir / f"{stem}.json", data)
    return data


def run(argv: list[str] | None = None) -> int:
    """Run the job; returns the exit status (0 ok, 2 bad input, 1 internal failure)."""
    args = _parser().parse_args(argv)
    try:
        params = PreprocessParams(
            spacing=(args.spacing[2], args.spacing[1], args.spacing[0]),
            window=tuple(args.window) if args.window else None,
            percentile_clip=tuple(args.percentile_clip) if args.percentile_clip else None,
            foreground_threshold=args.foreground_threshold,
        )
        if not args.input.is_dir():
            raise KernelInputError(f"input folder {args.input} does not exist")
        args.output.mkdir(parents=True, exist_ok=True)
        groups = discover_series(args.input)
        if not groups:
            raise KernelInputError(f"no DICOM image series found under {args.input}")
        skipped: list[dict[str, str]] = []
        done = 0
        for uid, files in groups.items():
            t0 = time.perf_counter()
            try:
                series = load_series(files)
                data = process_series(series, args.output, params, args.device, args.suv)
            except KernelInputError as exc:
                if not args.skip_invalid:
                    raise
                skipped.append({"series_instance_uid": uid, "reason": str(exc)})
                print(f"skipped {uid}: {exc}", file=sys.stderr)
                continue
            done += 1
            shape = "x".join(str(v) for v in data["shape_xyz"])  # type: ignore[attr-defined]
            print(f"wrote {_stem(uid)}.nii.gz ({shape}) in {time.perf_counter() - t0:.2f} s", flush=True)
        if skipped:
            import json

            (args.output / "skipped.json").write_text(json.dumps(skipped, indent=2) + "\n", encoding="utf-8")
        if done == 0:
            raise KernelInputError(
                f"none of the {len(groups)} series could be preprocessed (see skipped.json)"
            )
    except (KernelInputError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the job log gets one line, never a traceback
        print(f"error: internal failure: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":
    sys.exit(run())
