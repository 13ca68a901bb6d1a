"""DICOM series loading: ordering, geometry, rescale, and every refusal the issue lists."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless

from tests.kernels.synth import chest_phantom, rotation, write_series
from tests.kernels.test_cpu_kernels import HU_TOL, hu_error
from tre.kernels.dicom import discover_series, load_all, load_series
from tre.kernels.errors import (
    MissingSliceError,
    MixedOrientationError,
    NonUniformSpacingError,
    SeriesError,
    UndecodableError,
)
from tre.kernels.params import PreprocessParams
from tre.kernels.pipeline import preprocess_array
from tre.kernels.reference import preprocess_reference

DIRTESTS = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"


def check_against_reference(series, params: PreprocessParams) -> None:  # type: ignore[no-untyped-def]
    got = preprocess_array(series.raw, series.slopes, series.intercepts, series.spacing, params)
    ref = preprocess_reference(series.raw, series.slopes, series.intercepts, series.spacing, params)
    assert got.bbox == ref.bbox
    assert hu_error(got.image, ref.image, ref.std, params) <= HU_TOL


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_pydicom_single_files(name: str) -> None:
    path = get_testdata_file(name)
    series = load_series([path])
    ds = pydicom.dcmread(path)
    assert series.shape == (1, ds.Rows, ds.Columns)
    assert series.spacing[1:] == (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    expected = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    assert np.array_equal(series.values()[0], expected)
    window = (-1000.0, 400.0) if ds.Modality == "CT" else (0.0, 2000.0)
    threshold = -500.0 if ds.Modality == "CT" else 100.0
    params = PreprocessParams(spacing=(1.0, 0.5, 0.55), window=window, foreground_threshold=threshold)
    check_against_reference(series, params)


def test_pydicom_multi_file_ct_series() -> None:
    folder = DIRTESTS / "98892001" / "CT5N"
    if not folder.is_dir():
        pytest.skip("pydicom's bundled dicomdirtests series is not installed")
    groups = discover_series(folder)
    assert len(groups) == 1
    series = load_series(next(iter(groups.values())))
    assert series.shape == (5, 16, 16)
    assert series.spacing[0] == pytest.approx(2.5)
    proj = [float(np.dot(pydicom.dcmread(f).ImagePositionPatient, series.direction[2])) for f in series.files]
    assert proj == sorted(proj)
    check_against_reference(series, PreprocessParams(spacing=(1.0, 1.0, 1.0), window=(-1000.0, 400.0)))


def test_synthetic_oblique_series_sorted_by_position_not_instance_number(tmp_path: Path) -> None:
    raw = chest_phantom((9, 24, 20))
    rot = rotation((1.0, 2.0, 0.5), 27.0)
    slopes = np.linspace(0.9, 1.1, 9)
    # Instance numbers deliberately the reverse of spatial order; file names random.
    paths = write_series(
        tmp_path / "s",
        raw,
        spacing_zyx=(2.5, 0.7, 0.8),
        rot=rot,
        slopes=slopes,
        intercepts=[-1024.0] * 9,
        instance_order=list(range(9, 0, -1)),
    )
    assert len(paths) == 9
    (series,) = load_all(tmp_path)
    assert series.shape == raw.shape
    assert series.spacing == pytest.approx((2.5, 0.7, 0.8), abs=1e-5)
    assert np.array_equal(series.raw, raw)  # spatial order restored
    assert series.slopes == pytest.approx(slopes)
    assert series.direction[2] == pytest.approx(rot[:, 2], abs=1e-6)
    assert series.origin == pytest.approx((-120.0, -80.5, 33.0), abs=1e-5)
    check_against_reference(series, PreprocessParams(spacing=(1.0, 1.0, 1.0), window=(-1000.0, 400.0)))
    check_against_reference(
        series,
        PreprocessParams(spacing=(1.3, 0.9, 1.1), window=(-1000.0, 400.0), percentile_clip=(0.5, 99.5)),
    )


def test_reversed_positions_are_sorted_ascending(tmp_path: Path) -> None:
    raw = chest_phantom((5, 8, 8))
    write_series(tmp_path, raw, spacing_zyx=(3.0, 1.0, 1.0), positions_mm=[12.0, 9.0, 6.0, 3.0, 0.0])
    (series,) = load_all(tmp_path)
    assert np.array_equal(series.raw, raw[::-1])
    assert series.spacing[0] == pytest.approx(3.0)


def test_missing_slice(tmp_path: Path) -> None:
    raw = chest_phantom((6, 8, 8))
    write_series(tmp_path, raw, spacing_zyx=(2.0, 1.0, 1.0), positions_mm=[0, 2, 4, 8, 10, 12])
    with pytest.raises(
        MissingSliceError, match=r"1 slice missing \(spacing 2 mm; gaps at 37\.00->41\.00 mm\)"
    ):
        load_all(tmp_path)


def test_non_uniform_spacing_is_reported(tmp_path: Path) -> None:
    raw = chest_phantom((5, 8, 8))
    write_series(tmp_path, raw, spacing_zyx=(2.0, 1.0, 1.0), positions_mm=[0, 2, 4, 5.1, 7.0])
    with pytest.raises(NonUniformSpacingError, match=r"non-uniform slice spacing: steps range 1\.1-2 mm"):
        load_all(tmp_path)


def test_mixed_orientation(tmp_path: Path) -> None:
    raw = chest_phantom((4, 8, 8))
    axial = [1, 0, 0, 0, 1, 0]
    tilted = list(rotation((0, 0, 1), 10.0)[:, 0]) + list(rotation((0, 0, 1), 10.0)[:, 1])
    write_series(tmp_path, raw, spacing_zyx=(2.0, 1.0, 1.0), orientations=[axial, axial, tilted, axial])
    with pytest.raises(
        MixedOrientationError, match="2 different ImageOrientationPatient values across 4 files"
    ):
        load_all(tmp_path)


def test_duplicate_positions(tmp_path: Path) -> None:
    write_series(tmp_path, chest_phantom((3, 8, 8)), spacing_zyx=(2.0, 1.0, 1.0), positions_mm=[0, 2, 2])
    with pytest.raises(SeriesError, match="same position"):
        load_all(tmp_path)


def test_pydicom_bundled_bad_series_are_refused() -> None:
    scout = DIRTESTS / "98892003" / "MR700"
    gap = DIRTESTS / "77654033" / "CT2"
    if not scout.is_dir() or not gap.is_dir():
        pytest.skip("pydicom's bundled dicomdirtests series are not installed")
    with pytest.raises(MixedOrientationError):
        load_all(scout)
    with pytest.raises(MissingSliceError):
        load_all(gap)


def test_undecodable_compressed_syntax(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path / "in", chest_phantom((1, 8, 8)), spacing_zyx=(2.0, 1.0, 1.0))
    ds = pydicom.dcmread(path)
    # JPEG-LS framing around bytes no codec accepts: undecodable with or without plugins.
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 37])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(
        UndecodableError, match=r"transfer syntax JPEG-LS Lossless .*\(1\.2\.840\.10008\.1\.2\.4\.80\)"
    ):
        load_all(tmp_path)


def test_bundled_jpeg_ls_without_decoder(tmp_path: Path) -> None:
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    try:
        pydicom.dcmread(path).pixel_array
    except Exception:  # noqa: BLE001 - no plugin installed: the case under test
        shutil.copy(path, tmp_path / "x.dcm")
        with pytest.raises(UndecodableError, match="cannot be decoded"):
            load_all(tmp_path)
    else:
        pytest.skip("a JPEG-LS decoder is installed here")


def test_discovery_skips_non_dicom_and_groups_by_uid(tmp_path: Path) -> None:
    write_series(tmp_path / "a", chest_phantom((3, 8, 8)), spacing_zyx=(2.0, 1.0, 1.0))
    write_series(tmp_path / "b", chest_phantom((4, 6, 6)), spacing_zyx=(1.0, 1.0, 1.0))
    (tmp_path / "README.txt").write_text("not dicom")
    os.makedirs(tmp_path / "empty")
    groups = discover_series(tmp_path)
    assert sorted(len(v) for v in groups.values()) == [3, 4]
    with pytest.raises(SeriesError, match="no DICOM image series"):
        load_all(tmp_path / "empty")
