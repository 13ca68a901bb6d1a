"""A series too large for the job's memory fails alone, before anything is allocated.

Why: an oversized allocation is usually granted (overcommit) and the job is killed when the
pages are touched, taking the whole cohort with it, and a resumed run dies on the same series
again. The limit here is patched small so that small real series exercise the real checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.kernels.synth import chest_phantom, write_series
from tests.kernels.test_cohort import argv, make_cohort, manifest
from tre.kernels import memory
from tre.kernels.errors import SeriesTooLargeError
from tre.kernels.grid import grid_tables
from tre.kernels.job import run
from tre.kernels.params import PreprocessParams
from tre.kernels.pipeline import preprocess_array
from tre.kernels.progress import SeriesResult, parse


def test_this_machine_has_a_readable_limit() -> None:
    limit = memory.memory_limit_bytes()
    assert limit is not None and limit > 2**26


def test_check_fits_compares_with_the_share_of_the_limit() -> None:
    memory.check_fits("a volume", int(0.5 * 1000), limit=1000)
    with pytest.raises(SeriesTooLargeError, match=r"a volume needs .* GiB, more than this job can hold"):
        memory.check_fits("a volume", int(memory.SHARE * 1000) + 1, limit=1000)


def test_oversized_series_fails_alone_and_the_cohort_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_cohort(tmp_path / "in", n_good=2, bad=False)  # 4-5 slices of 24x20
    write_series(
        tmp_path / "in" / "big",
        chest_phantom((6, 64, 64), seed=9),
        spacing_zyx=(2.0, 0.9, 0.9),
        series_uid="1.2.826.0.1.77",
    )
    # 6 x 64 x 64 int16 = 48 KiB: over a 40 KiB share; the small series' arrays are not.
    monkeypatch.setattr(memory, "memory_limit_bytes", lambda: int(40 * 1024 / memory.SHARE))
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    entries = manifest(tmp_path / "out")["series"]
    assert entries["1.2.826.0.1.77"]["status"] == "failed"
    assert "6 slices of 64x64 needs" in entries["1.2.826.0.1.77"]["reason"]
    assert sorted(e["status"] for e in entries.values()) == ["failed", "ok", "ok"]
    results = [p for p in map(parse, capsys.readouterr().out.splitlines()) if isinstance(p, SeriesResult)]
    assert [r.reason for r in results if r.outcome == "failed"] == ["too-large"]


def test_a_target_grid_too_fine_for_memory_is_refused_before_the_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = chest_phantom((4, 24, 20), seed=2)
    ones, zeros = np.ones(4), np.full(4, -1024.0)
    params = PreprocessParams(spacing=(0.05, 0.05, 0.05), window=(-1000.0, 400.0))
    monkeypatch.setattr(memory, "memory_limit_bytes", lambda: 16 * 2**20)  # grid: ~17 M voxels
    with pytest.raises(SeriesTooLargeError, match=r"the resampled grid \(\d+x\d+x\d+\), cropped .* needs"):
        preprocess_array(raw, ones, zeros, (2.0, 0.9, 0.9), params)
    coarse = PreprocessParams(spacing=(2.0, 1.0, 1.0), window=(-1000.0, 400.0))
    assert preprocess_array(raw, ones, zeros, (2.0, 0.9, 0.9), coarse).image.size > 0


def test_the_cropped_output_is_checked_once_the_crop_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = chest_phantom((4, 24, 20), seed=2)
    ones, zeros = np.ones(4), np.full(4, -1024.0)
    params = PreprocessParams(spacing=(1.0, 0.5, 0.5), window=(-1000.0, 400.0))
    crop = preprocess_array(raw, ones, zeros, (2.0, 0.9, 0.9), params).image.size
    grid = math.prod(grid_tables(raw.shape, (2.0, 0.9, 0.9), params.spacing).shape)
    assert grid < 4 * crop  # the crop keeps more than a quarter of the grid here
    # Room for the grid check (a byte a voxel) but not for the float32 crop.
    monkeypatch.setattr(memory, "memory_limit_bytes", lambda: int((grid + 1) / memory.SHARE) + 1)
    with pytest.raises(SeriesTooLargeError, match=r"the cropped output \(\d+x\d+x\d+\) needs"):
        preprocess_array(raw, ones, zeros, (2.0, 0.9, 0.9), params)
