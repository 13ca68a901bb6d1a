"""Issue 13, seventh round: what a hospital's messy (or a hostile) archive does to the job.

Each test is a class of input that failed the cohort, failed as an internal error, produced
NaNs, hung, took gigabytes or minutes, or put input-controlled text in the job log, before
the fix it names (docs/kernels.md, "Issue 13, seventh round").
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from tests.kernels.synth import chest_phantom, compress_files, write_series
from tests.kernels.test_cohort import DONE, argv, job_process, make_cohort, manifest
from tre.kernels import cohort as cohort_module
from tre.kernels.codestream import check_frame_size, declared_size
from tre.kernels.dicom import discover_headers, load_series
from tre.kernels.errors import SeriesError, UndecodableError
from tre.kernels.job import run
from tre.kernels.manifest import Manifest
from tre.kernels.params import PreprocessParams
from tre.kernels.pipeline import KERNEL_DTYPES, kernel_dtype
from tre.kernels.progress import Progress, ProgressReporter, ProgressTracker, SeriesResult, parse
from tre.kernels.progress import claims_vocabulary as progress_claims

REPO = Path(__file__).resolve().parents[2]


def _series(root: Path, name: str, shape: tuple[int, int, int] = (4, 16, 16), **kw: object) -> list[Path]:
    return write_series(
        root / name,
        chest_phantom(shape, seed=len(name)),
        spacing_zyx=(2.0, 0.9, 0.9),
        **kw,  # type: ignore[arg-type]
    )


def _edit(paths: list[Path], **values: object) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        for key, value in values.items():
            setattr(ds, key, value)
        ds.save_as(path, enforce_file_format=False)


def _failures(out: str) -> list[str | None]:
    items = [parse(line) for line in out.splitlines()]
    return [i.reason for i in items if isinstance(i, SeriesResult) and i.outcome == "failed"]


# -- header values that are not numbers, or not geometry ---------------------------------------

BAD_HEADERS = {
    "orientation-zero": ({"ImageOrientationPatient": ["0"] * 6}, "zero direction vector"),
    "orientation-parallel": (
        {"ImageOrientationPatient": ["1", "0", "0", "1", "0", "0"]},
        "not perpendicular",
    ),
    "orientation-nan": ({"ImageOrientationPatient": ["nan", "0", "0", "0", "1", "0"]}, "not numbers"),
    "position-nan": ({"ImagePositionPatient": ["nan", "0", "0"]}, "ImagePositionPatient"),
    "position-inf": ({"ImagePositionPatient": ["0", "0", "inf"]}, "ImagePositionPatient"),
    "position-huge": ({"ImagePositionPatient": ["0", "0", "1e300"]}, "ImagePositionPatient"),
    "spacing-zero": ({"PixelSpacing": ["0", "0"]}, "PixelSpacing must be positive"),
    "spacing-negative": ({"PixelSpacing": ["-1", "1"]}, "PixelSpacing must be positive"),
    "spacing-nan": ({"PixelSpacing": ["nan", "1"]}, "PixelSpacing must be positive"),
    "spacing-huge": ({"PixelSpacing": ["1e30", "1e30"]}, "PixelSpacing must be positive"),
    "slope-nan": ({"RescaleSlope": "NaN"}, "RescaleSlope"),
    "slope-inf": ({"RescaleSlope": "inf"}, "RescaleSlope"),
    "slope-huge": ({"RescaleSlope": "1e300"}, "RescaleSlope"),
    "intercept-inf": ({"RescaleIntercept": "-inf"}, "RescaleIntercept"),
    "palette": ({"PhotometricInterpretation": "PALETTE COLOR"}, "PALETTE COLOR images are not greyscale"),
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_header_values_that_are_not_geometry_fail_the_series_in_one_line(tmp_path: Path, name: str) -> None:
    """Were: ValueError from the grid (an internal error), NumPy warnings, "two slices at one
    position", or a volume of NaNs written as a success."""
    values, message = BAD_HEADERS[name]
    paths = _series(tmp_path, name)
    _edit(paths[1:2] if "position" in name or "slope" in name else paths, **values)
    with pytest.raises(SeriesError, match=message):
        load_series(paths)


def test_one_slice_with_unusable_thickness_gets_the_default_spacing(tmp_path: Path) -> None:
    for thickness in ("0", "-3", "nan"):
        paths = _series(tmp_path, f"t{thickness}", shape=(1, 16, 16))
        _edit(paths, SliceThickness=thickness)
        assert load_series(paths).spacing[0] == 1.0


def test_messy_series_fail_alone_with_reason_codes_never_internal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    for i, name in enumerate(("orientation-zero", "spacing-zero", "slope-inf", "palette")):
        values, _ = BAD_HEADERS[name]
        _edit(_series(tmp_path / "in", name, series_uid=f"1.2.826.0.7.{i}"), **values)
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    entries = manifest(tmp_path / "out")["series"]
    assert sorted(e["status"] for e in entries.values()) == ["failed"] * 4 + ["ok"]
    assert not any("internal" in e.get("reason", "") for e in entries.values())
    assert _failures(capsys.readouterr().out) == ["invalid-series"] * 4


# -- pixel types ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int8", "int32", "uint32", "int64", "float64", "float32"])
def test_every_pixel_type_reaches_the_kernels_as_one_of_three(dtype: str) -> None:
    """Each new type compiled the kernels anew (20-40 s of CPU each); the conversion keeps
    the float32 value of every stored value, which is all the kernels read of it."""
    rng = np.random.default_rng(1)
    if dtype == "bool":
        raw = rng.integers(0, 2, (3, 5, 7)).astype(bool)
    elif dtype.startswith("float"):
        raw = rng.normal(0, 1e6, (3, 5, 7)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        raw = rng.integers(info.min, info.max, (3, 5, 7), dtype=dtype, endpoint=True)
    kept = kernel_dtype(raw)
    assert kept.dtype in KERNEL_DTYPES
    assert np.array_equal(kept.astype(np.float32), raw.astype(np.float32))


# -- compressed frames that lie about their size -------------------------------------------------


def _j2k_bomb(path: Path, size: int) -> None:
    """Make the J2K codestream declare ``size`` x ``size`` pixels in one tile."""
    data = bytearray(path.read_bytes())
    at = data.find(b"\xff\x4f\xff\x51")
    for offset in (8, 12, 24, 28):  # Xsiz, Ysiz, XTsiz, YTsiz
        data[at + offset : at + offset + 4] = size.to_bytes(4, "big")
    path.write_bytes(bytes(data))


def test_declared_sizes_are_read_from_jpeg_2000_jpeg_ls_and_jpeg(tmp_path: Path) -> None:
    pytest.importorskip("openjpeg")
    pytest.importorskip("jpeg_ls")
    frames = {}
    for ts in (JPEG2000Lossless, JPEGLSLossless):
        paths = _series(tmp_path, f"c{ts}", shape=(1, 40, 36))
        compress_files(paths, ts)
        frames[ts] = next(generate_frames(pydicom.dcmread(paths[0]).PixelData, number_of_frames=1))
        assert declared_size(frames[ts]) == (40, 36)
    ds = pydicom.dcmread(get_testdata_file("JPGExtended.dcm"))  # JPEG extended, 8 bits
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert declared_size(frame) == (ds.Rows, ds.Columns)
    assert declared_size(b"\x00" * 64) is None  # RLE and the like: no size of their own
    check_frame_size(frames[JPEG2000Lossless], 40, 36, "f")
    with pytest.raises(UndecodableError, match="declares 40x36 pixels but the header says 40x35"):
        check_frame_size(frames[JPEGLSLossless], 40, 35, "f")


@pytest.mark.parametrize("fast", [True, False], ids=["imagecodecs", "pydicom"])
def test_a_decompression_bomb_is_refused_before_any_decoder_allocates(
    tmp_path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 3 KB JPEG 2000 slice declaring 20000 x 20000 pixels took 1.8 GB and 14 s before the
    decoder gave up; 60000 x 60000 gets the job killed for memory (the whole cohort)."""
    pytest.importorskip("openjpeg")
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    paths = _series(tmp_path / "in", "bomb", shape=(3, 64, 64), series_uid="1.2.826.0.7.66")
    compress_files(paths, JPEG2000Lossless)
    _j2k_bomb(paths[1], 60000)
    if not fast:
        monkeypatch.setattr("tre.kernels.decode._imagecodecs", lambda: None)
    assert run(argv(tmp_path / "in", tmp_path / "out", "--workers", "1")) == 0
    entry = manifest(tmp_path / "out")["series"]["1.2.826.0.7.66"]
    assert entry["status"] == "failed"
    assert "declares 60000x60000 pixels but the header says 64x64; refused before decoding" in entry["reason"]
    assert _failures(capsys.readouterr().out) == ["undecodable-pixels"]


# -- what else lies in an input folder -----------------------------------------------------------


def test_fifos_sockets_and_links_out_of_the_input_are_not_read(tmp_path: Path) -> None:
    """Opening a FIFO blocked discovery for ever; a link out of the input read a series the
    job was not given; a link loop must not recur."""
    root = tmp_path / "in"
    _series(root, "inside", series_uid="1.2.826.0.7.1")
    outside = _series(tmp_path / "elsewhere", "s", series_uid="1.2.826.0.7.2")
    os.mkfifo(root / "pipe.dcm")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.dcm"))
    (root / "out-link.dcm").symlink_to(outside[0])
    (root / "loop").symlink_to(root)
    (root / "inside" / "again.dcm").symlink_to(next((root / "inside").iterdir()))  # inside: fine
    found: dict[str, list] = {}
    worker = threading.Thread(target=lambda: found.update(discover_headers(root)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    sock.close()
    assert not worker.is_alive(), "discovery blocked on a FIFO"
    assert list(found) == ["1.2.826.0.7.1"]
    assert len(found["1.2.826.0.7.1"]) == 5  # 4 files and the link to one of them


def test_file_names_that_are_not_utf8_do_not_fail_the_cohort(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The input fingerprint encoded names as UTF-8: one such name failed every series."""
    make_cohort(tmp_path / "in", n_good=2, bad=False)
    victim = next((tmp_path / "in" / "s0").iterdir())
    os.rename(bytes(victim), bytes(victim.parent) + b"/\xff\xfe\x1b[31m\nname.dcm")
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    assert manifest(tmp_path / "out")["counts"] == {"ok": 2}
    assert DONE.match(capsys.readouterr().out.splitlines()[-1])


def test_output_names_are_pseudonyms_whatever_the_uid(tmp_path: Path) -> None:
    """Two UIDs differing only in characters outside the file-name alphabet wrote one set of
    files when outputs were named by UID (the second overwrote the first), and a
    300-character UID failed as an internal error: pseudonyms carry nothing of the UID."""
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    _series(tmp_path / "in", "a", series_uid="1.2.3/4")
    _series(tmp_path / "in", "b", series_uid="1.2.3:4")
    _series(tmp_path / "in", "c", series_uid="9" * 300)
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    m = manifest(tmp_path / "out")
    assert m["counts"] == {"ok": 4}
    assert sorted(m["names"].values()) == sorted(m["series"]) and len(m["names"]) == 4
    assert len(list((tmp_path / "out" / "series").glob("series-0000?.nii.gz"))) == 4


def test_a_frame_count_without_frames_is_refused_quickly(tmp_path: Path) -> None:
    """NumberOfFrames 10^5 without per-frame groups built a table of 10^5 frames per file
    at discovery (2 s a file; the count goes to 2^31 - 1)."""
    paths = _series(tmp_path, "nf", shape=(2, 16, 16))
    _edit(paths, NumberOfFrames=2**31 - 1)
    heads = discover_headers(tmp_path)["".join(str(pydicom.dcmread(paths[0]).SeriesInstanceUID))]
    assert all(h.frames is not None and len(h.frames.positions) == 1 for h in heads)
    with pytest.raises(SeriesError, match="missing or malformed ImagePositionPatient"):
        load_series(heads)


# -- the log -------------------------------------------------------------------------------------


def test_c_libraries_and_warnings_cannot_write_to_the_log() -> None:
    """OpenJPEG printed "Invalid number of tiles : 938 x 938" (numbers from the file) to file
    descriptor 2 itself, and NumPy warned with the job's source lines."""
    code = (
        "import os, warnings\n"
        "from tre.kernels.job import private_log_streams\n"
        "with private_log_streams():\n"
        "    os.write(2, b'from C on 2\\n'); os.write(1, b'from C on 1\\n')\n"
        "    print('kept'); import sys; print('kept too', file=sys.stderr)\n"
        "print('after')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "kept\nafter\n" and proc.stderr == "kept too\n"


def test_progress_lines_stay_bounded_for_any_cohort_size() -> None:
    """A line per series of a 5,000-series cohort was 340 KiB: past the screened log's
    256 KiB budget, so the bar stopped and the final line never reached the researcher."""
    for total in (1, 7, 100, 101, 5000, 30_000):
        lines: list[str] = []
        reporter = ProgressReporter(total, lines.append)
        reporter.progress(force=True)
        for i in range(1, total + 1):
            failed = i % 3 == 0
            reporter.record(i, "failed" if failed else "ok", "too-large" if i % 2 else "missing-slices")
            reporter.progress()
        reporter.progress(force=True)
        summary = reporter.summary()
        tracker = ProgressTracker()
        items = [parse(line) for line in lines]
        assert all(item is not None and tracker.accept(item) for item in items)
        assert items[-1] == Progress(total, total, total // 3)
        assert len(lines) <= 2 + reporter.max_progress_lines + reporter.max_series_lines
        assert sum(len(line) + 1 for line in lines) < 16 * 1024
        if total <= reporter.max_series_lines:  # small cohorts: every series, as always
            assert sum(isinstance(i, SeriesResult) for i in items) == total and summary is None
        if total >= 5000:  # too many failures to print: counted per reason code
            odd = sum(1 for i in range(3, total + 1, 3) if i % 2)
            assert summary == f"failed series by reason: missing-slices {total // 3 - odd}, too-large {odd}"
            assert not progress_claims(summary)


def test_a_large_cohort_logs_bounded_progress_and_saves_the_manifest_rarely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The mechanism on a small cohort with small caps: each manifest save rewrote every
    entry (5,000 series: O(n^2) bytes), each series printed two lines."""
    make_cohort(tmp_path / "in", n_good=6, bad=True)
    monkeypatch.setattr(
        cohort_module,
        "ProgressReporter",
        functools.partial(ProgressReporter, max_progress_lines=2, max_series_lines=3),
    )
    monkeypatch.setattr("tre.kernels.manifest.SAVE_OVERHEAD", 1e9)  # as if each save were slow
    saves: list[int] = []
    real_save = Manifest.save
    monkeypatch.setattr(
        Manifest,
        "save",
        lambda self, paced=True: (saves.append(len(self.series)), real_save(self, paced))[1],
    )
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "tre-progress: 0/7 series done, 0 failed"
    assert lines[-2] == "tre-progress: 7/7 series done, 1 failed"
    assert DONE.match(lines[-1])
    assert [line for line in lines if line.startswith("tre-series")] == [
        "tre-series: 7/7 failed: not-one-stack"
    ]
    assert len(lines) <= 6
    assert saves == [0, 1, 7]  # the names (before any series), the first series, then the end
    assert manifest(tmp_path / "out")["counts"] == {"ok": 6, "failed": 1}


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ["--foreground-threshold", "nan"],
        ["--window", "nan", "400"],
        ["--window", "-1000", "inf"],
        ["--percentile-clip", "50", "50"],
        ["--percentile-clip", "-1", "99"],
        ["--workers", "-1"],
        ["--workers", "100000"],
        ["--format", "tiff"],
        ["--spacing", "nan", "1", "1"],
    ],
)
def test_bad_parameters_are_one_line_and_exit_2_before_any_work(
    tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = argv(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(SystemExit) as stop:  # argparse's refusals
        code = run([*args, *extra])
        raise SystemExit(code)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing" not in err
    assert not (tmp_path / "out").exists()


def test_threshold_must_be_a_number() -> None:
    with pytest.raises(ValueError, match="foreground threshold"):
        PreprocessParams(spacing=(1.0, 1.0, 1.0), foreground_threshold=float("nan"))


@pytest.mark.parametrize(
    "spacing, window, clip",
    [
        ((float("nan"), 1.0, 1.0), (-1000.0, 400.0), None),
        ((1.0, float("inf"), 1.0), (-1000.0, 400.0), None),
        ((1.0, 1.0, 1.0), (float("nan"), 400.0), None),
        ((1.0, 1.0, 1.0), (-1000.0, 400.0), (99.0, 1.0)),
    ],
)
def test_cli_refuses_what_the_job_would(spacing: tuple, window: tuple, clip: tuple | None) -> None:
    import typer

    from tre.cli.preprocess import check_recipe

    with pytest.raises(typer.BadParameter):
        check_recipe(spacing, window, clip)
    check_recipe((1.0, 1.0, 1.0), (-1000.0, 400.0), (0.5, 99.5))


def test_files_without_the_preamble_are_read(tmp_path: Path) -> None:
    """A data set written bare (no 128-byte preamble, no "DICM") was skipped as not DICOM:
    its series lost a slice (then "uneven spacing") or vanished from the cohort unreported."""
    paths = _series(tmp_path / "in", "bare", series_uid="1.2.826.0.7.5")
    reference = load_series(paths)
    for path in paths[:2]:
        path.write_bytes(path.read_bytes()[132:])
    (heads,) = discover_headers(tmp_path / "in").values()
    assert len(heads) == 4
    bare = load_series(heads)
    assert np.array_equal(bare.raw, reference.raw) and bare.spacing == reference.spacing
    (tmp_path / "in" / "text.dcm").write_bytes(b"\x08\x00 not DICOM at all")  # still skipped
    assert list(discover_headers(tmp_path / "in")) == ["1.2.826.0.7.5"]


def test_a_deflate_bomb_is_refused_while_counting_not_inflated_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydicom inflates a deflated data set whole, even for its header: ~1000 x the file's
    size (10 MB of file, 10 GB at discovery). The limit is patched small so that a small
    real file exercises the real check."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from tre.kernels import memory
    from tre.kernels.dicom import read_dataset
    from tre.kernels.errors import SeriesTooLargeError

    paths = _series(tmp_path / "in", "deflated", shape=(2, 64, 64), series_uid="1.2.826.0.7.9")
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(path)
    assert read_dataset(paths[0], stop_before_pixels=True).SeriesInstanceUID == "1.2.826.0.7.9"
    monkeypatch.setattr(memory, "memory_limit_bytes", lambda: int(4096 / memory.SHARE))  # < 8 KiB of pixels
    with pytest.raises(SeriesTooLargeError, match="the deflated data set needs"):
        read_dataset(paths[0], stop_before_pixels=True)


@pytest.mark.parametrize("target", [1e-6, 1e-3])
def test_a_target_spacing_far_too_fine_is_refused_before_the_tables_exist(
    target: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1e-6 mm asked for resampling tables of 24 bytes per output index (gigabytes for a
    512-pixel row) before the grid's size was checked; 1e-3 mm on a small memory limit."""
    from tre.kernels import memory, pipeline
    from tre.kernels.errors import SeriesTooLargeError

    def no_tables(*_a: object) -> None:
        raise AssertionError("tables built for a grid that does not fit")

    monkeypatch.setattr(pipeline, "grid_tables", no_tables)
    monkeypatch.setattr(memory, "memory_limit_bytes", lambda: 64 * 2**20)
    raw = chest_phantom((4, 24, 20), seed=2)
    params = PreprocessParams(spacing=(target, target, target), window=(-1000.0, 400.0))
    with pytest.raises(SeriesTooLargeError, match=r"the resampled grid \(\d+x\d+x\d+\)"):
        pipeline.preprocess_array(raw, np.ones(4), np.full(4, -1024.0), (2.0, 0.9, 0.9), params)


def _damage(path: Path, tag: bytes, vr: bytes) -> None:
    """Overwrite the VR of the element ``tag`` (little endian group, element) with ``vr``."""
    data = bytearray(path.read_bytes())
    at = data.find(tag)
    assert at > 0
    data[at + 4 : at + 6] = vr
    path.write_bytes(bytes(data))


def test_headers_pydicom_cannot_parse_fail_their_series_not_the_cohort(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Random damage to headers (a fuzzer's byte flips) found pydicom raising
    NotImplementedError (an unknown VR), BytesLengthException and ValueError (a transfer
    syntax UID that is none): out of discovery they failed the whole cohort, out of loading
    they were internal errors."""
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    one = _series(tmp_path / "in", "vr", series_uid="1.2.826.0.7.21")
    _damage(one[1], b"\x20\x00\x32\x00", b"Q\x82")  # ImagePositionPatient: unknown VR
    all_of_it = _series(tmp_path / "in", "all", series_uid="1.2.826.0.7.22")
    for path in all_of_it:
        _damage(path, b"\x28\x00\x30\x00", b"US")  # PixelSpacing as US: length 8 fits, values do not
    ts = _series(tmp_path / "in", "ts", series_uid="1.2.826.0.7.23")
    for path in ts:
        data = path.read_bytes().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.5.1.4\x00")
        path.write_bytes(data)
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    entries = manifest(tmp_path / "out")["series"]
    assert entries["1.2.826.0.1.0"]["status"] == "ok"
    assert not any("internal" in e.get("reason", "") for e in entries.values()), entries
    assert "internal-error" not in capsys.readouterr().out


def test_a_decoders_own_complaints_stay_out_of_the_real_jobs_log(tmp_path: Path) -> None:
    """The job process on a JPEG 2000 slice whose marker after SIZ is damaged: OpenJPEG
    prints "A marker ID was expected (0xff--) instead of 0000..." to descriptor 2 itself."""
    pytest.importorskip("openjpeg")
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    paths = _series(tmp_path / "in", "j2k", shape=(3, 64, 64), series_uid="1.2.826.0.7.31")
    compress_files(paths, JPEG2000Lossless)
    data = bytearray(paths[1].read_bytes())
    at = data.find(b"\xff\x4f\xff\x51") + 4
    after_siz = at + int.from_bytes(data[at : at + 2], "big")
    data[after_siz : after_siz + 2] = b"\x00\x00"
    paths[1].write_bytes(bytes(data))
    proc = job_process(tmp_path / "in", tmp_path / "out")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert all(parse(line) is not None for line in lines[:-1]) and DONE.match(lines[-1])
    assert manifest(tmp_path / "out")["series"]["1.2.826.0.7.31"]["status"] == "failed"


def _rle_panic_frame(rows: int, cols: int) -> bytes:
    """An RLE frame of 16-bit pixels whose replicate runs write past the frame: the Rust
    decoder (pylibjpeg-rle) panics on it (an index out of bounds)."""
    segment = b"\x81\x05" * (rows * cols // 64 + 8)  # each run: 128 bytes of 5
    header = struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13))
    return header + segment + segment


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_decoder_panic_fails_its_series_not_the_cohort(
    tmp_path: Path, workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """pyo3's PanicException is a BaseException: it passed every ``except Exception`` and
    ended the cohort with a traceback (found by fuzzing RLE frames)."""
    pytest.importorskip("rle")
    from pydicom.encaps import encapsulate

    make_cohort(tmp_path / "in", n_good=1, bad=False)
    paths = _series(tmp_path / "in", "rle", shape=(2, 64, 64), series_uid="1.2.826.0.7.41")
    compress_files(paths, RLELossless)
    ds = pydicom.dcmread(paths[0])
    ds.PixelData = encapsulate([_rle_panic_frame(64, 64)])
    ds.save_as(paths[0], enforce_file_format=True)
    assert run(argv(tmp_path / "in", tmp_path / "out", "--workers", workers)) == 0
    entries = manifest(tmp_path / "out")["series"]
    assert entries["1.2.826.0.1.0"]["status"] == "ok"
    assert entries["1.2.826.0.7.41"]["status"] == "failed"
    assert "cannot be decoded" in entries["1.2.826.0.7.41"]["reason"]
    assert _failures(capsys.readouterr().out) == ["undecodable-pixels"]


@pytest.mark.parametrize("ts", [JPEGLSLossless, JPEG2000Lossless], ids=["jpeg-ls", "jpeg-2000"])
def test_an_offset_table_longer_than_the_file_fails_its_series_as_undecodable(
    tmp_path: Path, ts: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Basic Offset Table item whose length runs past the file: pydicom's parser raises
    struct.error, which the fast path did not expect (an internal error; found by fuzzing)."""
    pytest.importorskip("openjpeg")
    pytest.importorskip("jpeg_ls")
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    paths = _series(tmp_path / "in", "bot", shape=(2, 64, 64), series_uid="1.2.826.0.7.51")
    compress_files(paths, ts)
    data = bytearray(paths[1].read_bytes())
    bot = data.find(b"\xe0\x7f\x10\x00") + 12  # the Basic Offset Table item after Pixel Data
    assert data[bot : bot + 4] == b"\xfe\xff\x00\xe0"
    data[bot + 4 : bot + 8] = (0x00A00000).to_bytes(4, "little")
    paths[1].write_bytes(bytes(data))
    assert run(argv(tmp_path / "in", tmp_path / "out", "--workers", "1")) == 0
    entry = manifest(tmp_path / "out")["series"]["1.2.826.0.7.51"]
    assert entry["status"] == "failed" and "cannot be decoded" in entry["reason"], entry
    assert _failures(capsys.readouterr().out) == ["undecodable-pixels"]


def test_a_decoder_that_crashes_its_process_fails_that_series_and_not_the_job(tmp_path: Path) -> None:
    """A decoder crash (here os.abort, standing for a segfault on hostile data) in a decode
    process broke the pool; the series was then decoded in the job's own process, where the
    same crash ended the job and the whole cohort (and a resume met it again)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\n"
        "import tre.kernels.dicom as d\n"
        "real = d._decode_file\n"
        "def crashing(path):\n"
        "    if '/in/boom!/' in str(path):\n"
        "        os.abort()\n"
        "    return real(path)\n"
        "d._decode_file = crashing\n"
    )
    for name in ("good", "boom!"):
        compress_files(_series(tmp_path / "in", name, series_uid=f"1.2.826.0.7.6{len(name)}"), RLELossless)
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}", "PYTHONFAULTHANDLER": ""}
    cmd = [
        sys.executable,
        "-m",
        "tre.kernels.job",
        *argv(tmp_path / "in", tmp_path / "out"),
        "--workers",
        "2",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    entries = manifest(tmp_path / "out")["series"]
    assert entries["1.2.826.0.7.64"]["status"] == "ok"
    assert entries["1.2.826.0.7.65"]["status"] == "failed"
    assert "decoder's process died" in entries["1.2.826.0.7.65"]["reason"]
    assert _failures(proc.stdout) == ["undecodable-pixels"]


def test_files_that_begin_as_dicom_but_cannot_be_read_are_counted_and_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slice whose header is cut mid-element was skipped with the README files: its series
    failed as "uneven spacing" with no word of the file, and a series of such files
    vanished from the cohort unreported."""
    make_cohort(tmp_path / "in", n_good=1, bad=False)
    cut = _series(tmp_path / "in", "cut", series_uid="1.2.826.0.7.71")
    cut[1].write_bytes(cut[1].read_bytes()[:400])
    gone = _series(tmp_path / "in", "gone", series_uid="1.2.826.0.7.72")
    for path in gone:
        path.write_bytes(path.read_bytes()[:300])
    (tmp_path / "in" / "README.txt").write_text("not DICOM, not counted")
    shutil.copy(get_testdata_file("DICOMDIR"), tmp_path / "in" / "DICOMDIR")  # DICOM, no image
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "skipped 5 DICOM image files that cannot be read (listed in manifest.json)" in lines
    assert not progress_claims(lines[-2]) and DONE.match(lines[-1])
    listed = manifest(tmp_path / "out")["unreadable_files"]
    assert sorted(listed) == sorted(str(p.relative_to(tmp_path / "in")) for p in [cut[1], *gone])
