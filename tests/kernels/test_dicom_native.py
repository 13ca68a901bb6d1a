"""Native slices are read straight into the volume: same pixels as pydicom's decoders.

The loader reads a slice's header up to Pixel Data and then its native little-endian
pixels with one read into the volume (no pixel array per slice, no stacking copy); anything
else goes through pydicom. These tests hold that path to pydicom's own ``pixel_array`` on
real files: pydicom's bundled ones and synthetic series with unused high bits set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

from tests.kernels.synth import chest_phantom, compress_files, write_series
from tre.kernels.dicom import _read_header, load_series
from tre.kernels.errors import SeriesError


def assert_same_as_pydicom(paths: list[Path]) -> None:
    series = load_series(paths)
    for k, path in enumerate(series.files):
        expected = pydicom.dcmread(path).pixel_array
        assert series.raw.dtype == expected.dtype.newbyteorder("=")  # big-endian files too
        np.testing.assert_array_equal(series.raw[k], expected)


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"]
)
def test_pydicom_bundled_files_match_pixel_array(name: str) -> None:
    assert_same_as_pydicom([Path(get_testdata_file(name))])


def test_native_offset_points_at_the_pixel_bytes(tmp_path: Path) -> None:
    raw = chest_phantom((2, 12, 10), seed=3)
    for path in write_series(tmp_path, raw, spacing_zyx=(2.0, 0.8, 0.8)):
        ds, offset = _read_header(path)
        assert "PixelData" not in ds
        data = path.read_bytes()
        pixels = pydicom.dcmread(path).PixelData
        assert offset is not None and data[offset : offset + len(pixels)] == pixels


def test_big_endian_and_compressed_slices_are_left_to_pydicom(tmp_path: Path) -> None:
    assert _read_header(Path(get_testdata_file("MR_small_bigendian.dcm")))[1] is None
    paths = write_series(tmp_path, chest_phantom((2, 8, 8), seed=1), spacing_zyx=(1.0, 1.0, 1.0))
    compress_files(paths[:1], RLELossless)
    assert _read_header(paths[0])[1] is None
    assert _read_header(paths[1])[1] is not None


@pytest.mark.parametrize("signed", [True, False])
def test_unused_high_bits_are_corrected_like_pydicom(tmp_path: Path, signed: bool) -> None:
    rng = np.random.default_rng(5)
    stored = rng.integers(-2048 if signed else 0, 2048 if signed else 4096, size=(3, 16, 12))
    garbage = rng.integers(0, 16, size=stored.shape) << 12  # junk in the 4 unused bits
    words = ((stored & 0x0FFF) | garbage).astype(np.uint16)
    paths = write_series(
        tmp_path,
        words.view(np.int16),
        spacing_zyx=(1.5, 0.7, 0.7),
        extra={"BitsStored": 12, "HighBit": 11, "PixelRepresentation": 1 if signed else 0},
    )
    assert_same_as_pydicom(paths)
    # slice k of the synthetic series sits at k x 1.5 mm: the volume is in that order
    np.testing.assert_array_equal(load_series(paths).raw.astype(np.int64), stored)


def test_implicit_vr_and_mixed_compressed_slices(tmp_path: Path) -> None:
    paths = write_series(tmp_path, chest_phantom((5, 20, 18), seed=2), spacing_zyx=(2.0, 0.9, 0.9))
    for path in paths[:2]:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
    compress_files(paths[2:4], RLELossless)
    assert [(_read_header(p)[1] is None) for p in paths] == [False, False, True, True, False]
    assert_same_as_pydicom(paths)


def test_truncated_pixel_data_is_refused(tmp_path: Path) -> None:
    paths = write_series(tmp_path, chest_phantom((3, 16, 16), seed=4), spacing_zyx=(1.0, 1.0, 1.0))
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:-100])
    with pytest.raises(SeriesError, match="shorter than Rows x Columns"):
        load_series(paths)
