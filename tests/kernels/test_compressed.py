"""Compressed DICOM (JPEG 2000, JPEG-LS, RLE, JPEG lossless): decoded losslessly through
pydicom's pixel handlers and the pylibjpeg / pyjpegls plugins, or refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from tests.kernels.synth import chest_phantom, compress_files, compress_files_jpeg_lossless_gdcm, write_series
from tre.kernels.dicom import load_series
from tre.kernels.errors import SeriesError, UndecodableError

REPO = Path(__file__).resolve().parents[2]

ENCODERS = {
    RLELossless: None,
    JPEG2000Lossless: "openjpeg",
    JPEGLSLossless: "jpeg_ls",
}


def _need_encoder(ts: str) -> None:
    module = ENCODERS[ts]
    if module is not None:
        pytest.importorskip(module, reason=f"encoder for {ts} not installed")


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_pydicom_compressed_files_decode_to_the_uncompressed_pixels(name: str) -> None:
    plain = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    series = load_series([get_testdata_file(name)])
    assert series.raw.shape == (1, *plain.shape)
    assert np.array_equal(series.raw[0], plain)


def test_pydicom_ct_jpeg2000_files_decode() -> None:
    for name in ("693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"):
        path = get_testdata_file(name)
        series = load_series([path])
        ds = pydicom.dcmread(path)
        assert series.raw.shape == (1, ds.Rows, ds.Columns)
        # Same pixels as pydicom's own default decoding path.
        assert np.array_equal(series.raw[0], ds.pixel_array)


def test_pydicom_jpeg_lossless_process_14_decodes() -> None:
    """pydicom bundles JPEG lossless (process 14) only as an RGB image without geometry:
    both decoders agree on it; the loader refuses it for its missing geometry, not its codec."""
    path = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")
    for plugin in ("pylibjpeg", "gdcm"):
        if plugin == "gdcm":
            pytest.importorskip("gdcm")
        arr = pixel_array(path, decoding_plugin=plugin)
        assert arr.shape == (100, 100, 3)
        assert np.array_equal(arr, pixel_array(path, decoding_plugin="pylibjpeg"))
    with pytest.raises(SeriesError, match="ImageOrientationPatient") as err:
        load_series([path])
    assert not isinstance(err.value, UndecodableError)


def test_synthetic_jpeg_lossless_process_14_series(tmp_path: Path) -> None:
    """GDCM (python-gdcm, dev extra) encodes JPEG lossless SV1; both decoders read it back."""
    pytest.importorskip("gdcm")
    raw = chest_phantom((5, 40, 36), seed=4)
    paths = write_series(tmp_path / "s", raw, spacing_zyx=(2.0, 0.8, 0.8))
    compress_files_jpeg_lossless_gdcm(paths)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    series = load_series(paths)
    assert np.array_equal(series.raw, raw)
    for path in paths:  # the other decoder agrees slice by slice
        ds = pydicom.dcmread(path)
        k = int(np.argmin(np.abs(series.origin[2] + np.arange(5) * 2.0 - float(ds.ImagePositionPatient[2]))))
        assert np.array_equal(pixel_array(path, decoding_plugin="pylibjpeg"), raw[k])


@pytest.mark.parametrize("ts", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_synthetic_series_compressed_losslessly_loads_identically(tmp_path: Path, ts: str) -> None:
    _need_encoder(ts)
    raw = chest_phantom((6, 40, 36), seed=3)
    paths = write_series(tmp_path / "s", raw, spacing_zyx=(2.0, 0.8, 0.8))
    before = load_series(paths)
    compress_files(paths, ts)
    assert str(pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID) == ts
    with ThreadPoolExecutor(3) as pool:
        after = load_series(paths, pool=pool)
    assert np.array_equal(after.raw, before.raw)
    assert np.array_equal(after.raw, raw)
    assert after.spacing == before.spacing


def test_compressed_series_without_decoders_is_refused_in_one_line(tmp_path: Path) -> None:
    """The job image may lack the plugins: block their imports for real in a child process."""
    _need_encoder(JPEG2000Lossless)
    paths = write_series(tmp_path / "s", chest_phantom((2, 48, 48)), spacing_zyx=(2.0, 1.0, 1.0))
    compress_files(paths, JPEG2000Lossless)
    # sitecustomize blocks the imports in the job and in its decode worker processes alike.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        top = name.split('.')[0]\n"
        "        blocked = {'pylibjpeg', 'openjpeg', 'libjpeg', 'rle', 'jpeg_ls', 'gdcm', 'PIL'}\n"
        "        if top in blocked | {'imagecodecs'}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-m", "tre.kernels.job", "--input", str(tmp_path / "s"), "--output"]
    cmd += [str(tmp_path / "o"), "--spacing", "1", "1", "1", "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    # The log's line names the code; the reason, with what to install, is in the manifest.
    code = "undecodable-pixels 1 (reasons in manifest.json)"
    assert lines == [f"error: the series could not be preprocessed: {code}"]
    (entry,) = json.loads((tmp_path / "o" / "manifest.json").read_text())["series"].values()
    syntax = "JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)"
    assert f"{syntax} cannot be decoded" in entry["reason"]
    assert "Install a decoder plugin" in entry["reason"]
