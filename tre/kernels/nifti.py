"""Write a preprocessed volume as NIfTI-1 (nibabel) plus its JSON sidecar.

The affine maps the *cropped, resampled* array back to scanner space, so the output
overlays the source DICOM in any viewer: DICOM patient coordinates are LPS, NIfTI's are
RAS, hence the sign flip of the first two rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tre.kernels.dicom import Series
from tre.kernels.params import PreprocessResult


def output_affine(
    series: Series, target_zyx: tuple[float, float, float], offset_zyx: tuple[int, int, int]
) -> np.ndarray:
    """RAS affine of an (x, y, z)-indexed array resampled to ``target_zyx``, cropped at ``offset``."""
    dx, dy, dz = series.direction[0], series.direction[1], series.direction[2]
    tz, ty, tx = target_zyx
    oz, oy, ox = offset_zyx
    aff = np.eye(4)
    aff[:3, 0] = dx * tx
    aff[:3, 1] = dy * ty
    aff[:3, 2] = dz * tz
    aff[:3, 3] = series.origin + ox * tx * dx + oy * ty * dy + oz * tz * dz
    aff[0, :] *= -1.0
    aff[1, :] *= -1.0
    return aff


def write_nifti(path: Path, image_zyx: np.ndarray, affine: np.ndarray) -> None:
    """Save float32 (z, y, x) data as NIfTI (x, y, z) with scanner-space qform and sform."""
    import nibabel as nib  # here, not at import: the job's start-up path does not need it

    img = nib.Nifti1Image(np.asarray(image_zyx, dtype=np.float32).transpose(2, 1, 0), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def sidecar(
    series: Series,
    result: PreprocessResult,
    *,
    target_zyx: tuple[float, float, float],
    window: tuple[float, float] | None,
    percentile_clip: tuple[float, float] | None,
    foreground_threshold: float,
    units: str,
    device: str,
    versions: dict[str, str],
    timings_s: dict[str, float],
    suv_factor: float | None = None,
) -> dict[str, Any]:
    """The JSON sidecar: provenance and every number needed to reproduce or invert the run.

    No identifier: the series is named by its pseudonym (the cohort adds ``series``), and
    which SeriesInstanceUID that is stays in ``manifest.json``, so a sidecar can pass the
    airlock's identifier checks."""
    bbox = result.bbox
    return {
        "modality": series.modality,
        "source_files": len(series.files),
        "source_shape_zyx": list(series.shape),
        "source_spacing_zyx_mm": list(series.spacing),
        "spacing_zyx_mm": list(target_zyx),
        "spacing_xyz_mm": list(target_zyx[::-1]),
        "resampled_shape_zyx": list(result.full_shape),
        "shape_zyx": list(result.image.shape),
        "shape_xyz": list(result.image.shape[::-1]),
        "units_before_normalisation": units,
        "suvbw_factor": suv_factor,
        "window": list(window) if window is not None else None,
        "percentile_clip": list(percentile_clip) if percentile_clip is not None else None,
        "percentile_values": list(result.percentile_values) if result.percentile_values else None,
        "foreground_threshold": foreground_threshold,
        "bbox_zyx": (
            None
            if bbox is None
            else {"start": [bbox[0], bbox[2], bbox[4]], "stop": [bbox[1], bbox[3], bbox[5]]}
        ),
        "stats": {
            "mean": result.mean,
            "std": result.std,
            "foreground_voxels": result.foreground_voxels,
            "normalisation": "z-score: (v - mean) / std",
        },
        "interpolation": "trilinear; output voxel k at k * spacing from input voxel 0, no extrapolation",
        "device": device,
        "software": versions,
        "timing_s": timings_s,
    }


def write_sidecar(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
