"""Reused output buffers (`tre.kernels.buffers.OutputPool`): the CPU kernels write the same
values into them as into a fresh array; memory stays bounded; the cohort job's use. Reused
stored-pixel volumes (`InputPool`): a series loaded into a stale buffer equals a fresh load."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numba
import numpy as np
import pytest

from tests.kernels.synth import chest_phantom, write_series
from tests.kernels.test_cohort import series_file
from tre.kernels.buffers import InputPool, OutputPool
from tre.kernels.cohort import CohortOptions, CohortRun
from tre.kernels.cpu import STACK_COLS
from tre.kernels.dicom import discover_headers, load_series
from tre.kernels.job import run
from tre.kernels.params import PreprocessParams
from tre.kernels.pipeline import preprocess_array

WINDOW = PreprocessParams(spacing=(0.9, 0.8, 0.7), window=(-1000.0, 400.0))


def volume(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.int16)
    return raw, np.ones(shape[0]), np.full(shape[0], -1024.0)


def test_take_gives_back_a_view_of_a_buffer_written_before() -> None:
    pool = OutputPool()
    assert pool.take((2, 3, 4)) is None  # nothing free yet: the caller allocates
    first = np.ones((4, 5, 6), dtype=np.float32)
    pool.give(first)
    smaller = pool.take((3, 5, 6))
    assert smaller is not None and smaller.shape == (3, 5, 6) and smaller.flags.c_contiguous
    assert smaller.ctypes.data == first.ctypes.data and pool.reused == 1
    assert pool.take((3, 5, 6)) is None  # lent out: not handed out twice
    pool.give(smaller)  # a view: the whole underlying buffer comes back
    assert pool.free_bytes() == first.nbytes
    pool.give(smaller)  # given twice: kept once
    assert pool.free_bytes() == first.nbytes


def test_memory_stays_bounded() -> None:
    pool = OutputPool(max_free=1)
    small = np.zeros(10, dtype=np.float32)
    large = np.zeros(100, dtype=np.float32)
    pool.give(small)
    pool.give(large)
    assert pool.free_bytes() == large.nbytes  # at most max_free buffers, the largest kept
    assert pool.take((200,)) is None  # too small: dropped before the caller allocates
    assert pool.free_bytes() == 0
    pool.give(np.zeros(5, dtype=np.float64))  # not a float32 output: not kept
    read_only = np.zeros(4, dtype=np.float32)
    read_only.flags.writeable = False
    pool.give(read_only)  # not writable: not kept
    assert pool.free_bytes() == 0
    with pytest.raises(ValueError):
        OutputPool(max_free=0)


@pytest.mark.parametrize("shape", [(9, 23, 37), (6, 17, 64), (5, 4, STACK_COLS + 5)])
@pytest.mark.parametrize("threads", [1, 2])
def test_reused_buffer_gives_the_fresh_arrays_values(shape: tuple[int, int, int], threads: int) -> None:
    """Into a reused buffer (a view into a larger one) the kernels write bitwise the fresh
    result, for 1 and 2 threads, odd row widths and rows wider than the stack scratch."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, before))
    try:
        args = volume(shape, seed=shape[2])
        spacing = (2.5, 0.7, 0.7)  # x: as many output columns as input ones
        fresh = preprocess_array(*args, spacing, WINDOW)
        pool = OutputPool()
        big = np.full(fresh.image.size + 1000, np.nan, dtype=np.float32)
        pool.give(big)
        got = preprocess_array(*args, spacing, WINDOW, pool=pool)
        assert pool.reused == 1 and got.image.ctypes.data == big.ctypes.data
        assert np.array_equal(got.image, fresh.image)
        assert got.mean == fresh.mean and got.std == fresh.std and got.bbox == fresh.bbox
        pool.give(got.image)
        again = preprocess_array(*args, spacing, WINDOW, pool=pool)  # same buffer, written over
        assert np.array_equal(again.image, fresh.image)
    finally:
        numba.set_num_threads(before)


def test_percentile_recipe_into_a_reused_buffer() -> None:
    args = volume((12, 30, 29), seed=5)
    params = PreprocessParams(spacing=(1.1, 0.9, 0.8), window=(-1000.0, 400.0), percentile_clip=(0.5, 99.5))
    fresh = preprocess_array(*args, (2.0, 0.8, 0.8), params)
    pool = OutputPool()
    pool.give(np.zeros(fresh.image.size, dtype=np.float32))
    got = preprocess_array(*args, (2.0, 0.8, 0.8), params, pool=pool)
    assert pool.reused == 1 and np.array_equal(got.image, fresh.image)


def test_cohort_outputs_equal_fresh_ones_when_buffers_are_reused(tmp_path: Path) -> None:
    """Series that shrink and then grow: later outputs land in earlier series' buffers (or
    in a fresh one when none fits); every output equals that series preprocessed alone."""
    write_cohort(tmp_path / "in", [(7, 26, 22), (6, 26, 22), (4, 20, 22), (3, 18, 16), (7, 26, 22)], 20, "7")
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "in"), "--output", str(out), "--format", "nii"]
    assert run([*argv, "--spacing", "1", "1", "1.5", "--window", "-1000", "400"]) == 0
    assert_outputs_equal_series_alone(tmp_path / "in", out)


# The recipe of the cohorts below (as the job's --spacing 1 1 1.5 --window -1000 400).
COHORT_PARAMS = PreprocessParams(spacing=(1.5, 1.0, 1.0), window=(-1000.0, 400.0))


def write_cohort(root: Path, shapes: list[tuple[int, int, int]], seed: int, uid_part: str) -> None:
    """One series of each shape under ``root`` (UIDs ``1.2.826.0.<uid_part>.<i>``, in order)."""
    for i, shape in enumerate(shapes):
        write_series(
            root / f"s{i}",
            chest_phantom(shape, seed=seed + i),
            spacing_zyx=(2.0, 0.9, 0.9),
            series_uid=f"1.2.826.0.{uid_part}.{i}",
        )


def assert_outputs_equal_series_alone(in_dir: Path, out: Path) -> None:
    """Each ``.nii`` output of the cohort equals its series preprocessed alone (COHORT_PARAMS)."""
    for uid, headers in discover_headers(in_dir).items():
        s = load_series(headers)
        ref = preprocess_array(s.raw, s.slopes, s.intercepts, s.spacing, COHORT_PARAMS)
        got = np.asarray(nib.load(series_file(out, uid, ".nii")).dataobj)
        assert np.array_equal(got, ref.image.transpose(2, 1, 0)), uid


# --------------------------------------------------------------- stored pixels (InputPool)


def test_input_pool_lends_views_of_any_stored_type() -> None:
    pool = InputPool()
    first = np.zeros((3, 4, 5), dtype=np.int16)
    pool.give(first)
    lent = pool.take_as((2, 4, 5), np.uint16)
    assert lent is not None and lent.dtype == np.uint16 and lent.shape == (2, 4, 5)
    assert lent.flags.c_contiguous and lent.ctypes.data == first.ctypes.data and pool.reused == 1
    assert pool.take_as((1, 1, 1), np.int16) is None  # lent out: not handed out twice
    pool.give(lent)  # a view: the whole buffer comes back
    assert pool.free_bytes() == first.nbytes
    assert pool.take_as((4, 4, 5), np.int16) is None and pool.free_bytes() == 0  # too small: dropped
    foreign = np.frombuffer(bytearray(64), dtype=np.int16)  # memory the pool does not own
    pool.give(foreign)
    assert pool.free_bytes() == 0


@pytest.mark.parametrize("codec", [None, "jls", "rle"])
def test_series_loaded_into_a_stale_buffer_equals_a_fresh_load(tmp_path: Path, codec: str | None) -> None:
    """A reused buffer holds the values of an earlier series: every element of the volume is
    written by the loader (read, decoded into the row, or placed by pydicom's handlers)."""
    from pydicom.uid import JPEGLSLossless, RLELossless

    from tests.kernels.synth import compress_files

    if codec == "jls":
        pytest.importorskip("jpeg_ls")
    raw = chest_phantom((6, 24, 20), seed=3)
    paths = write_series(tmp_path / "s", raw, spacing_zyx=(2.0, 0.8, 0.8), series_uid="1.2.826.0.9.1")
    if codec is not None:
        compress_files(paths, {"jls": JPEGLSLossless, "rle": RLELossless}[codec])
    (heads,) = discover_headers(tmp_path / "s").values()
    fresh = load_series(heads)
    pool = InputPool()
    stale = np.full(fresh.raw.nbytes // 2 + 1000, 0x5A5A, dtype=np.uint16)
    pool.give(stale)
    with ThreadPoolExecutor(2) as threads:
        got = load_series(heads, pool=threads, volumes=pool)
    assert pool.reused == 1 and got.raw.ctypes.data == stale.ctypes.data
    assert got.raw.dtype == fresh.raw.dtype and np.array_equal(got.raw, fresh.raw)


def test_cohort_decodes_later_series_into_earlier_volumes(tmp_path: Path) -> None:
    """In a cohort the volume of series i takes series i + 2 when it fits (here series 3
    and 4 of 5; the last one is larger than any free buffer), and every output equals the
    series preprocessed alone."""
    write_cohort(tmp_path / "in", [(7, 26, 22), (6, 26, 22), (4, 20, 22), (3, 18, 16), (9, 26, 22)], 40, "8")
    opts = CohortOptions(params=COHORT_PARAMS, fmt="nii", workers=2)
    (tmp_path / "out").mkdir()
    cohort = CohortRun(tmp_path / "in", tmp_path / "out", opts, report=lambda _line: None)
    summary = cohort.run()
    assert summary.ok == 5 and cohort.inputs is not None and cohort.inputs.reused == 2
    assert_outputs_equal_series_alone(tmp_path / "in", tmp_path / "out")


def test_hand_over_gives_each_free_buffer_to_one_taker_whatever_the_timing() -> None:
    """The buffer free when a series is submitted is that series' alone: a later `give` on
    the shared pool neither drops it nor races its taker (the count still adds up)."""
    pool = InputPool()
    first, second = np.zeros(40, dtype=np.int16), np.zeros(30, dtype=np.int16)
    pool.give(first)
    mine = pool.hand_over()
    assert pool.free_bytes() == 0 and mine.free_bytes() == first.nbytes
    pool.give(second)  # the next series' volume, given before the first taker took its own
    theirs = pool.hand_over()
    a, b = mine.take_as((4, 10), np.int16), theirs.take_as((3, 10), np.int16)
    assert a is not None and a.ctypes.data == first.ctypes.data
    assert b is not None and b.ctypes.data == second.ctypes.data
    assert pool.reused == 2 and pool.free_bytes() == 0
    assert pool.hand_over().take_as((1,), np.int16) is None  # nothing free: a fresh array
