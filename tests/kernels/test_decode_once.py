"""The cohort job decodes each compressed slice once (issue 13, 14th round).

Why: on a cohort with JPEG 2000 series the decoder is most of the job's CPU (~28 ms a
512x512 slice), so a second decode anywhere (a header probe that decodes pixels, a check
that reads ``pixel_array``, a retry through pydicom after a good fast decode) would cost as
much as the whole job's other work. This runs the real job (`tre.kernels.job.run`) on a
small cohort of JPEG 2000 and JPEG-LS series with counting wrappers around the decoders it
may reach: imagecodecs' (the fast path) and pydicom's (the fallback)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from tests.kernels.synth import chest_phantom, compress_files, write_series
from tre.kernels.job import run

imagecodecs = pytest.importorskip("imagecodecs")


def _counting(counts: Counter[str], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return fn(*args, **kwargs)

    return wrapper


def test_each_compressed_slice_is_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    slices = {JPEG2000Lossless: 5, JPEGLSLossless: 4}
    for i, (ts, n) in enumerate(slices.items()):
        paths = write_series(
            root / f"s{i}",
            chest_phantom((n, 64, 64), seed=i),
            spacing_zyx=(2.0, 0.9, 0.9),
            series_uid=f"1.2.826.0.7.{i}",
        )
        compress_files(paths, ts)
    counts: Counter[str] = Counter()
    for name in ("jpeg2k_decode", "jpegls_decode"):
        monkeypatch.setattr(imagecodecs, name, _counting(counts, name, getattr(imagecodecs, name)))
    for name in ("as_array", "iter_array", "as_buffer", "iter_buffer"):
        monkeypatch.setattr(Decoder, name, _counting(counts, "pydicom", getattr(Decoder, name)))
    argv = ["--input", str(root), "--output", str(out), "--spacing", "1", "1", "1.5"]
    assert run([*argv, "--window", "-1000", "400"]) == 0
    done = json.loads((out / "manifest.json").read_text())
    assert len(done["series"]) == 2, done
    assert counts == {"jpeg2k_decode": slices[JPEG2000Lossless], "jpegls_decode": slices[JPEGLSLossless]}
