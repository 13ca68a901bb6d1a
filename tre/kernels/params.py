"""What to do to a volume, and what came out: shared by the CPU, CUDA and reference paths."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tre.kernels.output_choices import DEFAULT_MAX_ERROR, check_dtype, check_max_error

if TYPE_CHECKING:
    import numpy as np

    from tre.kernels.quantise import Quantisation

# Stand-in for "no clip" that keeps kernels free of inf arithmetic (float32-representable).
NO_CLIP = 3.0e38


@dataclass(frozen=True)
class PreprocessParams:
    """Target spacing (z, y, x) in mm plus the intensity recipe.

    window: HU [lo, hi] clip, then scale to [0, 1] (CT windowing). With ``percentile_clip``
    the window is only a hard pre-clip (no scaling) and the nnU-Net recipe follows: clip to
    the given percentiles of the foreground, z-score with the foreground's mean and std.
    Foreground is ``HU > foreground_threshold`` on the resampled, unclipped image; the output
    is cropped to its bounding box (the whole grid when nothing is foreground).
    """

    spacing: tuple[float, float, float]
    window: tuple[float, float] | None = None
    percentile_clip: tuple[float, float] | None = None
    foreground_threshold: float = -500.0
    histogram_bins: int = 8192
    # How the output is stored (`tre.kernels.quantise`): float32 (exact) or int16 with a
    # per-series slope and intercept, decoded within ``max_error`` of the float32 output.
    output_dtype: str = "float32"
    max_error: float = DEFAULT_MAX_ERROR

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or any(not (s > 0 and math.isfinite(s)) for s in self.spacing):
            raise ValueError(f"target spacing must be three positive numbers, got {self.spacing}")
        if self.window is not None and not self.window[0] < self.window[1]:
            raise ValueError(f"window must be [lo, hi] with lo < hi, got {list(self.window)}")
        if self.percentile_clip is not None:
            lo, hi = self.percentile_clip
            if not 0.0 <= lo < hi <= 100.0:
                raise ValueError(f"percentile clip must satisfy 0 <= lo < hi <= 100, got {[lo, hi]}")
        if self.window is not None and not all(math.isfinite(w) for w in self.window):
            raise ValueError(f"window must be two finite numbers, got {list(self.window)}")
        if not math.isfinite(self.foreground_threshold):
            # NaN made every voxel background (comparisons with NaN are false) without a word.
            raise ValueError(f"foreground threshold must be a finite number, got {self.foreground_threshold}")
        check_dtype(self.output_dtype)
        check_max_error(self.max_error)

    def clip_scale(self) -> tuple[float, float, float, float]:
        """(clip_lo, clip_hi, shift, scale) of the first stage: v = (clip(hu) - shift) * scale."""
        if self.window is None:
            return (-NO_CLIP, NO_CLIP, 0.0, 1.0)
        lo, hi = float(self.window[0]), float(self.window[1])
        if self.percentile_clip is not None:
            return (lo, hi, 0.0, 1.0)
        return (lo, hi, lo, 1.0 / (hi - lo))


@dataclass
class PreprocessResult:
    """Cropped image (z, y, x) and everything the JSON sidecar reports: float32, or int16
    when ``quantisation`` says so (decoded = stored * slope + intercept)."""

    image: np.ndarray
    full_shape: tuple[int, int, int]
    # Half-open box [z0, z1, y0, y1, x0, x1] in the full output grid; None when no foreground.
    bbox: tuple[int, int, int, int, int, int] | None
    mean: float
    std: float
    foreground_voxels: int
    percentile_values: tuple[float, float] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    # How ``image`` is stored when int16 was asked for (None: float32 was asked for).
    quantisation: Quantisation | None = None

    @property
    def crop_offset(self) -> tuple[int, int, int]:
        """Index in the full grid of the cropped image's first voxel."""
        if self.bbox is None:
            return (0, 0, 0)
        return (self.bbox[0], self.bbox[2], self.bbox[4])
