"""The fast compressed-slice decoder (`tre.kernels.decode`, imagecodecs) against pydicom's
own decoding, bit for bit: pydicom's bundled JPEG 2000 / JPEG-LS files (including a signed
codestream stored as unsigned and a near-lossless one) and synthetic series with negative
values and unused high bits, compressed here; and the fallback to pydicom where it cannot
decode (colour, 8-bit, a damaged codestream)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless

from tests.kernels.synth import compress_files, compress_files_jpeg_lossless_gdcm, write_series
from tre.kernels.decode import FastDecodeError, FrameRef, decode_into, locate_frame
from tre.kernels.dicom import _read_header, load_series

pytest.importorskip("imagecodecs")

FAST_FILES = [
    "693_J2KI.dcm",  # lossy JPEG 2000, BitsStored 14, signed
    "J2K_pixelrep_mismatch.dcm",  # unsigned codestream, PixelRepresentation 1, 13 bits
    "JPEG2000.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",  # signed JPEG-LS (sign restored from the precision)
    "JPEGLSNearLossless_16.dcm",  # unsigned, near-lossless
]


def _fast(path: Path) -> tuple[pydicom.Dataset, FrameRef]:
    ds, ref = _read_header(path)
    assert isinstance(ref, FrameRef), f"{path.name} was not given to the fast decoder"
    return ds, ref


@pytest.mark.parametrize("name", FAST_FILES)
def test_pydicom_files_decode_bit_identically(name: str) -> None:
    path = Path(get_testdata_file(name))
    ds, ref = _fast(path)
    expected = pydicom.dcmread(path).pixel_array
    out = np.full((ds.Rows, ds.Columns), 0x5A5A, np.int16 if ref.signed else np.uint16)
    decode_into(path, ref, out)
    assert out.dtype == expected.dtype
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("name", ["GDCMJ2K_TextGBR.dcm", "JPEGLSNearLossless_08.dcm", "SC_rgb_jpeg_gdcm.dcm"])
def test_colour_and_8_bit_files_are_left_to_pydicom(name: str) -> None:
    path = Path(get_testdata_file(name))
    with path.open("rb") as fh:
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
        assert locate_frame(fh, ds) is None


def _signed_series(folder: Path, bits_stored: int) -> tuple[np.ndarray, list[Path]]:
    """Stored values spanning the signed range of ``bits_stored`` bits, negatives included."""
    rng = np.random.default_rng(bits_stored)
    lo, hi = -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    raw = rng.integers(lo, hi + 1, size=(4, 64, 48)).astype(np.int16)
    raw[:, :4, :] = lo  # runs of extreme values
    raw[:, -4:, :] = hi
    extra = {"BitsStored": bits_stored, "HighBit": bits_stored - 1}
    paths = write_series(folder, raw, spacing_zyx=(2.0, 0.7, 0.7), extra=extra, intercepts=[0.0] * 4)
    return raw, paths


@pytest.mark.parametrize("ts", [JPEG2000Lossless, JPEGLSLossless])
@pytest.mark.parametrize("bits_stored", [12, 16])
def test_synthetic_signed_series_decodes_like_pydicom(tmp_path: Path, ts: str, bits_stored: int) -> None:
    raw, paths = _signed_series(tmp_path / "s", bits_stored)
    compress_files(paths, ts)
    for path in paths:
        _fast(path)
    with ThreadPoolExecutor(3) as pool:
        series = load_series(paths, pool=pool)
    assert series.raw.dtype == np.int16
    assert np.array_equal(series.raw, raw)
    for k, path in enumerate(series.files):
        assert np.array_equal(series.raw[k], pydicom.dcmread(path).pixel_array)


def test_synthetic_jpeg_lossless_series_decodes_like_pydicom(tmp_path: Path) -> None:
    pytest.importorskip("gdcm")
    raw, paths = _signed_series(tmp_path / "s", 16)
    compress_files_jpeg_lossless_gdcm(paths)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    for path in paths:
        _fast(path)
    series = load_series(paths)
    assert np.array_equal(series.raw, raw)
    for k, path in enumerate(series.files):
        assert np.array_equal(series.raw[k], pydicom.dcmread(path).pixel_array)


def test_damaged_codestream_raises_for_the_fallback(tmp_path: Path) -> None:
    """A truncated JPEG 2000 frame is not decoded into garbage: the fast path gives up
    (`FastDecodeError`) and pydicom's refusal is what the loader reports."""
    raw, paths = _signed_series(tmp_path / "s", 16)
    compress_files(paths[:1], JPEG2000Lossless)
    ds = pydicom.dcmread(paths[0])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    ds.PixelData += b"\0" * (len(ds.PixelData) % 2)
    ds.save_as(paths[0], enforce_file_format=True)
    _, ref = _fast(paths[0])
    out = np.zeros(raw.shape[1:], np.int16)
    with pytest.raises(FastDecodeError):
        decode_into(paths[0], ref, out)
