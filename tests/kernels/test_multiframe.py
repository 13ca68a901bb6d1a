"""Enhanced multi-frame DICOM (one file per series) loads like the same series stored as one
slice per file: same pixels, geometry and rescale, bit-identical to pydicom's `pixel_array`,
native and compressed (RLE, JPEG 2000, JPEG-LS, JPEG lossless; Basic, empty or Extended Offset
Table), frames in any order; and what is not one spatial stack is refused in one line.

The files are written here with pydicom (`tests.kernels.synth.write_enhanced`) from the same
phantom as the classic series: pydicom's bundled test files have no enhanced CT/MR.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from tests.kernels.synth import (
    chest_phantom,
    compress_files_jpeg_lossless_gdcm,
    rotation,
    write_enhanced,
    write_series,
)
from tests.kernels.test_cohort import argv, manifest, series_file
from tests.kernels.test_header_reuse import _forked
from tests.kernels.test_suv import F18_HALF_LIFE, pet_tags
from tre.kernels import dicom
from tre.kernels.dicom import Series, discover_headers, load_series
from tre.kernels.errors import (
    MissingSliceError,
    MixedOrientationError,
    NotOneStackError,
    SeriesError,
    SuvError,
    UndecodableError,
)
from tre.kernels.job import run
from tre.kernels.multiframe import MultiFrameRef
from tre.kernels.suv import to_suvbw

SPACING = (2.0, 0.8, 0.8)
SHAPE = (5, 40, 36)  # OpenJPEG does not encode much smaller frames
ORDER = [3, 0, 4, 1, 2]  # plane stored as frame i


def one_series(folder: Path) -> Series:
    """The only series under ``folder``, through discovery's headers (as the job loads it)."""
    (heads,) = discover_headers(folder).values()
    return load_series(heads)


def assert_same_series(a: Series, b: Series) -> None:
    assert a.raw.dtype == b.raw.dtype
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.slopes, b.slopes)
    np.testing.assert_array_equal(a.intercepts, b.intercepts)
    assert a.spacing == b.spacing
    np.testing.assert_array_equal(a.origin, b.origin)
    np.testing.assert_array_equal(a.direction, b.direction)


def compress_jpeg_lossless(path: Path) -> None:
    """JPEG lossless SV1 frames by GDCM (pydicom cannot encode it), in the file's own
    functional groups: GDCM's writer rebuilds those from its image model (it recomputed the
    frame positions in file order), so only its encapsulated pixel data is kept."""
    pytest.importorskip("gdcm")
    original = pydicom.dcmread(path)
    compress_files_jpeg_lossless_gdcm([path])
    compressed = pydicom.dcmread(path)
    original.file_meta.TransferSyntaxUID = compressed.file_meta.TransferSyntaxUID
    original.PixelData = compressed.PixelData
    original.save_as(path, enforce_file_format=True)


def no_pydicom_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any frame falls back to pydicom's decoders (the fast path must hold)."""

    def refuse(*_args: object, **_kwargs: object) -> np.ndarray:
        raise AssertionError("a frame fell back to pydicom")

    monkeypatch.setattr(dicom, "decode_frame", refuse)
    monkeypatch.setattr(dicom, "_pixels", refuse)


@pytest.mark.parametrize(
    ("ts", "offsets"),
    [
        (None, "basic"),
        (RLELossless, "basic"),
        (RLELossless, "none"),
        (JPEG2000Lossless, "basic"),
        (JPEG2000Lossless, "none"),
        (JPEGLSLossless, "basic"),
        (JPEGLSLossless, "extended"),
        (JPEGLosslessSV1, "gdcm"),
    ],
)
def test_enhanced_file_loads_like_the_classic_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ts: str | None, offsets: str
) -> None:
    if ts == JPEG2000Lossless:
        pytest.importorskip("openjpeg", reason="JPEG 2000 encoder not installed")
    if ts == JPEGLSLossless:
        pytest.importorskip("jpeg_ls", reason="JPEG-LS encoder not installed")
    raw = chest_phantom(SHAPE, seed=1)
    classic = load_series(write_series(tmp_path / "c", raw, spacing_zyx=SPACING))
    if ts == JPEGLosslessSV1:
        path = write_enhanced(tmp_path / "e" / "mf.dcm", raw, spacing_zyx=SPACING, frame_order=ORDER)
        compress_jpeg_lossless(path)
    else:
        path = write_enhanced(
            tmp_path / "e" / "mf.dcm",
            raw,
            spacing_zyx=SPACING,
            frame_order=ORDER,
            transfer_syntax=ts,
            offsets=offsets,
        )
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert header.file_meta.TransferSyntaxUID == (ts or ExplicitVRLittleEndian)
    (head,) = next(iter(discover_headers(path.parent).values()))
    assert isinstance(head.pixel, MultiFrameRef)
    assert head.pixel.native == (ts is None)
    if ts in (JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1):
        pytest.importorskip("imagecodecs")
        assert head.pixel.codec is not None
    if ts != RLELossless:  # native and JPEG frames never go through pydicom's decoders
        no_pydicom_frames(monkeypatch)
    enhanced = one_series(path.parent)
    monkeypatch.undo()
    assert_same_series(enhanced, classic)
    np.testing.assert_array_equal(enhanced.raw, raw)
    assert enhanced.files == (path,)
    # Bit-identical to pydicom's own decoding of the whole file, frame by frame.
    stored = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(enhanced.raw[ORDER], stored)


def test_per_frame_rescale_and_oblique_geometry(tmp_path: Path) -> None:
    raw = chest_phantom(SHAPE, seed=2)
    slopes = [1.0, 0.5, 2.0, 1.0, 0.25]
    intercepts = [-1024.0, -1000.0, -1024.0, -3.5, 0.0]
    rot = rotation((1.0, 2.0, 0.5), 23.0)
    kw = {"spacing_zyx": (1.5, 0.7, 0.9), "slopes": slopes, "intercepts": intercepts, "rot": rot}
    classic = load_series(write_series(tmp_path / "c", raw, **kw))  # type: ignore[arg-type]
    path = write_enhanced(tmp_path / "e" / "mf.dcm", raw, shared_rescale=False, frame_order=ORDER, **kw)  # type: ignore[arg-type]
    enhanced = one_series(path.parent)
    assert_same_series(enhanced, classic)
    np.testing.assert_array_equal(enhanced.slopes, slopes)
    # Shared rescale: one slope and intercept for every frame.
    shared = write_enhanced(tmp_path / "s" / "mf.dcm", raw, spacing_zyx=SPACING, slopes=[0.5] * 5)
    series = one_series(shared.parent)
    assert set(series.slopes) == {0.5} and set(series.intercepts) == {-1024.0}


def test_unused_high_bits_of_native_frames_are_corrected_like_pydicom(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    stored = rng.integers(-2048, 2048, size=(4, 16, 12))
    words = ((stored & 0x0FFF) | (rng.integers(0, 16, size=stored.shape) << 12)).astype(np.uint16)
    path = write_enhanced(
        tmp_path / "e" / "mf.dcm",
        words.view(np.int16),
        spacing_zyx=SPACING,
        frame_order=[2, 3, 0, 1],
        extra={"BitsStored": 12, "HighBit": 11},
    )
    series = one_series(path.parent)
    np.testing.assert_array_equal(series.raw.astype(np.int64), stored)
    np.testing.assert_array_equal(series.raw[[2, 3, 0, 1]], pydicom.dcmread(path).pixel_array)


def test_a_series_split_across_two_multiframe_files_is_one_volume(tmp_path: Path) -> None:
    raw = chest_phantom(SHAPE, seed=3)
    classic = load_series(write_series(tmp_path / "c", raw, spacing_zyx=SPACING))
    uid = "1.2.826.0.1.3680043.99.1"
    first = write_enhanced(
        tmp_path / "e" / "a.dcm", raw, spacing_zyx=SPACING, frame_order=[4, 0], series_uid=uid
    )
    second = write_enhanced(
        tmp_path / "e" / "b.dcm", raw, spacing_zyx=SPACING, frame_order=[2, 3, 1], series_uid=uid
    )
    series = one_series(tmp_path / "e")
    assert_same_series(series, classic)
    assert set(series.files) == {first, second}


def write_bad(folder: Path, case: str, uid: str | None = None) -> Path:
    """An enhanced file that is not one regular stack."""
    raw = chest_phantom(SHAPE, seed=4)
    path = folder / "mf.dcm"
    if case == "two-at-one-position":
        return write_enhanced(path, raw, spacing_zyx=SPACING, positions_mm=[0, 2, 2, 4, 6], series_uid=uid)
    if case == "missing-frame":
        return write_enhanced(path, raw, spacing_zyx=SPACING, positions_mm=[0, 2, 4, 8, 10], series_uid=uid)
    if case == "mixed-orientation":
        tilted = list(rotation((0, 0, 1), 30.0)[:, 0]) + list(rotation((0, 0, 1), 30.0)[:, 1])
        iops = [[1, 0, 0, 0, 1, 0]] * 4 + [tilted]
        return write_enhanced(path, raw, spacing_zyx=SPACING, orientations=iops, series_uid=uid)
    if case == "two-stacks":  # distinct positions, but StackID 1 and 2 interleaved
        return write_enhanced(
            path, raw, spacing_zyx=SPACING, stack_ids=["1", "2", "1", "2", "1"], series_uid=uid
        )
    if case in ("two-phases", "two-b-values"):  # distinct positions, per-frame dimension values
        path = write_enhanced(path, raw, spacing_zyx=SPACING, series_uid=uid)
        ds = pydicom.dcmread(path)
        for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            if case == "two-phases":
                frame.FrameContentSequence[0].TemporalPositionIndex = 1 + i % 2
            else:
                diffusion = Dataset()
                diffusion.DiffusionBValue = [0.0, 1000.0][i % 2]
                frame.MRDiffusionSequence = [diffusion]
        ds.save_as(path, enforce_file_format=True)
        return path
    if case == "no-geometry":
        path = write_enhanced(path, raw, spacing_zyx=SPACING, series_uid=uid)
        ds = pydicom.dcmread(path)
        for frame in ds.PerFrameFunctionalGroupsSequence:
            del frame.PlanePositionSequence
        ds.save_as(path, enforce_file_format=True)
        return path
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "error", "text"),
    [
        ("two-at-one-position", NotOneStackError, "two frames at the same position"),
        ("missing-frame", MissingSliceError, "1 frame missing"),
        (
            "mixed-orientation",
            MixedOrientationError,
            "2 different ImageOrientationPatient values across 5 frames",
        ),
        ("two-stacks", NotOneStackError, "frames of 2 stacks (StackID 1, 2)"),
        (
            "two-phases",
            NotOneStackError,
            "frames of 2 temporal positions (phases) (TemporalPositionIndex 1, 2)",
        ),
        ("two-b-values", NotOneStackError, "frames of 2 b-values (DiffusionBValue 0.0, 1000.0)"),
        ("no-geometry", SeriesError, "frame 1: missing or malformed ImagePositionPatient"),
    ],
)
def test_what_is_not_one_stack_is_refused_in_one_line(
    tmp_path: Path, case: str, error: type[SeriesError], text: str
) -> None:
    write_bad(tmp_path, case)
    with pytest.raises(error) as err:
        one_series(tmp_path)
    assert text in str(err.value) and "\n" not in str(err.value)


def test_multiframe_without_functional_groups_is_refused() -> None:
    """pydicom's RT dose (15 frames on a grid, no functional groups): not an image stack."""
    with pytest.raises(SeriesError, match="no functional groups geometry"):
        load_series([get_testdata_file("rtdose.dcm")])


def corrupt_frame(path: Path, index: int) -> None:
    """Replace one encapsulated frame by a JPEG 2000 codestream that stops after SIZ."""
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    frames[index] = b"\xff\x4f\xff\x51" + b"\x00" * 60
    ds.PixelData = encapsulate(frames)
    ds.save_as(path, enforce_file_format=True)


def test_cohort_of_enhanced_series_matches_the_classic_output_and_bad_ones_fail_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The job end to end: enhanced series (native, RLE, JPEG 2000) give the classic series'
    output bit for bit; each refusal fails its series only, with its code in the log."""
    have_j2k = importlib.util.find_spec("openjpeg") is not None
    raw = chest_phantom(SHAPE, seed=6)
    root = tmp_path / "in"
    write_series(root / "classic", raw, spacing_zyx=SPACING, series_uid="1.2.826.0.9.11")
    write_enhanced(
        root / "native" / "mf.dcm", raw, spacing_zyx=SPACING, frame_order=ORDER, series_uid="1.2.826.0.9.12"
    )
    good = ["1.2.826.0.9.12"]
    rle = root / "rle" / "mf.dcm"
    write_enhanced(
        rle,
        raw,
        spacing_zyx=SPACING,
        transfer_syntax=RLELossless,
        offsets="none",
        series_uid="1.2.826.0.9.13",
    )
    good.append("1.2.826.0.9.13")
    expected = {}
    if have_j2k:
        j2k = root / "j2k" / "mf.dcm"
        kw = {
            "spacing_zyx": SPACING,
            "frame_order": ORDER,
            "transfer_syntax": JPEG2000Lossless,
            "offsets": "none",
        }
        write_enhanced(j2k, raw, series_uid="1.2.826.0.9.14", **kw)  # type: ignore[arg-type]
        good.append("1.2.826.0.9.14")
        write_enhanced(root / "broken" / "mf.dcm", raw, series_uid="1.2.826.0.9.15", **kw)  # type: ignore[arg-type]
        corrupt_frame(root / "broken" / "mf.dcm", 2)
        expected["1.2.826.0.9.15"] = ("undecodable-pixels", "frame 3: pixel data in transfer syntax")
    cases = {
        "two-at-one-position": ("not-one-stack", "two frames at the same position"),
        "missing-frame": ("missing-slices", "1 frame missing"),
        "mixed-orientation": ("mixed-orientation", "different ImageOrientationPatient"),
        "two-stacks": ("not-one-stack", "frames of 2 stacks"),
        "no-geometry": ("invalid-series", "no functional groups geometry"),
    }
    for i, (case, want) in enumerate(cases.items()):
        write_bad(root / case, case, uid=f"1.2.826.0.9.{21 + i}")
        expected[f"1.2.826.0.9.{21 + i}"] = want
    dose = root / "dose" / "rtdose.dcm"
    dose.parent.mkdir()
    shutil.copy(get_testdata_file("rtdose.dcm"), dose)
    expected[str(pydicom.dcmread(dose, stop_before_pixels=True).SeriesInstanceUID)] = (
        "invalid-series",
        "no functional groups geometry",
    )
    out = tmp_path / "out"
    assert run(argv(root, out)) == 0
    log = capsys.readouterr().out
    m = manifest(out)
    assert m["counts"] == {"ok": 1 + len(good), "failed": len(expected)}
    for uid, (code, text) in expected.items():
        entry = m["series"][uid]
        assert entry["status"] == "failed" and text in entry["reason"], entry
        assert f"tre-series: {entry['index']}/{m['counts']['ok'] + len(expected)} failed: {code}" in log
    assert "1.2.826" not in log and "frame" not in log  # codes only, no UIDs, paths or reasons
    reference = series_file(out, "1.2.826.0.9.11").read_bytes()
    ref_img = nib.load(series_file(out, "1.2.826.0.9.11"))
    for uid in good:
        img = nib.load(series_file(out, uid))
        np.testing.assert_array_equal(np.asarray(img.dataobj), np.asarray(ref_img.dataobj))
        np.testing.assert_array_equal(img.affine, ref_img.affine)
        assert series_file(out, uid).read_bytes() == reference  # the same output, byte for byte
        side = json.loads(series_file(out, uid, ".json").read_text())
        assert side["source_files"] == 1 and side["source_shape_zyx"] == list(SHAPE)


def enhanced_pet_tags(**over: object) -> dict[str, object]:
    """The Enhanced PET modules' tags for the acquisition `tests.kernels.test_suv.pet_tags`
    describes: injection 09:30, frames decay-corrected to 10:30."""
    info = Dataset()
    info.RadionuclideTotalDose = "370000000"
    info.RadionuclideHalfLife = str(F18_HALF_LIFE)
    info.RadiopharmaceuticalStartDateTime = "20240301093000"
    tags: dict[str, object] = {
        "AttenuationCorrected": "YES",
        "DecayCorrected": "YES",
        "DecayCorrectionDateTime": "20240301103000",
        "PatientWeight": "75",
        "RadiopharmaceuticalInformationSequence": [info],
    }
    tags.update(over)
    return {k: v for k, v in tags.items() if v is not None}


def test_enhanced_pet_gets_the_classic_suvbw_factor(tmp_path: Path) -> None:
    raw = chest_phantom((4, 12, 10), seed=7)
    classic = load_series(
        write_series(tmp_path / "c", raw, spacing_zyx=SPACING, modality="PT", extra=pet_tags())
    )
    path = write_enhanced(
        tmp_path / "e" / "mf.dcm", raw, spacing_zyx=SPACING, modality="PT", extra=enhanced_pet_tags()
    )
    enhanced = one_series(path.parent)
    (classic_suv, classic_factor), (suv, factor) = to_suvbw(classic), to_suvbw(enhanced)
    assert factor == pytest.approx(classic_factor, rel=1e-12)
    np.testing.assert_allclose(suv.values(), classic_suv.values(), rtol=1e-12)


@pytest.mark.parametrize(
    ("over", "text"),
    [
        ({"DecayCorrected": "NO"}, "DecayCorrected NO"),
        ({"DecayCorrectionDateTime": None}, "DecayCorrectionDateTime"),
        ({"DecayCorrectionDateTime": "20240301090000"}, "after the decay reference time"),
    ],
)
def test_enhanced_pet_without_what_suvbw_needs_is_refused(
    tmp_path: Path, over: dict[str, object], text: str
) -> None:
    raw = chest_phantom((2, 12, 10), seed=7)
    path = write_enhanced(
        tmp_path / "e" / "mf.dcm", raw, spacing_zyx=SPACING, modality="PT", extra=enhanced_pet_tags(**over)
    )
    with pytest.raises(SuvError, match=text) as err:
        to_suvbw(one_series(path.parent))
    assert "\n" not in str(err.value)


def test_enhanced_pet_not_in_bqml_is_refused(tmp_path: Path) -> None:
    path = write_enhanced(
        tmp_path / "e" / "mf.dcm",
        chest_phantom((2, 12, 10)),
        spacing_zyx=SPACING,
        modality="PT",
        extra=enhanced_pet_tags(),
    )
    ds = pydicom.dcmread(path)
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleType = "CNTS"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(SuvError, match="RescaleType is CNTS, not BQML"):
        to_suvbw(one_series(path.parent))


def test_big_endian_enhanced_file_is_decoded_whole_by_pydicom(tmp_path: Path) -> None:
    """Explicit VR Big Endian (retired): no fast path, pydicom decodes the whole file once and
    its frames are copied into their rows, in the machine's byte order."""
    raw = chest_phantom((4, 12, 10), seed=8)
    path = write_enhanced(tmp_path / "e" / "mf.dcm", raw, spacing_zyx=SPACING, frame_order=[2, 0, 3, 1])
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = np.frombuffer(ds.PixelData, "<i2").astype(">i2").tobytes()
    dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    (head,) = next(iter(discover_headers(path.parent).values()))
    assert head.pixel is None
    series = one_series(path.parent)
    assert series.raw.dtype.isnative
    np.testing.assert_array_equal(series.raw, raw)
    np.testing.assert_array_equal(series.raw[[2, 0, 3, 1]], pydicom.dcmread(path).pixel_array)


def test_forked_discovery_carries_the_frame_tables(tmp_path: Path) -> None:
    write_enhanced(
        tmp_path / "a" / "mf.dcm", chest_phantom((3, 8, 8)), spacing_zyx=SPACING, frame_order=[1, 2, 0]
    )
    write_series(tmp_path / "b", chest_phantom((2, 8, 8)), spacing_zyx=SPACING)
    assert _forked(tmp_path, 1) == "1 True True 0"  # the same records, FrameTable included
    assert _forked(tmp_path, 1, hold=True) == "1 True True 1"  # all parsed here: one chunk


@pytest.mark.filterwarnings("ignore:The end of the encapsulated pixel data")  # pydicom, RLE without a table
@pytest.mark.parametrize(
    ("ts", "bot"), [(RLELossless, True), (RLELossless, False), (JPEG2000Lossless, False)]
)
def test_frames_in_several_fragments(tmp_path: Path, ts: str, bot: bool) -> None:
    """Two fragments per frame: split by the Basic Offset Table, or without one by the
    JPEG end-of-image marker; RLE frames have none, so without a table they are refused."""
    if ts == JPEG2000Lossless:
        pytest.importorskip("openjpeg", reason="JPEG 2000 encoder not installed")
    raw = chest_phantom(SHAPE, seed=9)
    path = write_enhanced(
        tmp_path / "e" / "mf.dcm", raw, spacing_zyx=SPACING, frame_order=ORDER, transfer_syntax=ts
    )
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=len(ORDER)))
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=bot)
    ds.save_as(path, enforce_file_format=True)
    if ts == RLELossless and not bot:
        with pytest.raises(UndecodableError, match="does not split into its 5 frames") as err:
            one_series(path.parent)
        assert "Offset Table" in str(err.value) and "\n" not in str(err.value)
        return
    np.testing.assert_array_equal(one_series(path.parent).raw, raw)
