"""Discovery's headers reused by the loader, discovery in a forked process, the job timeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from tests.kernels.synth import chest_phantom, write_series
from tre.kernels import dicom
from tre.kernels import header_values as hv
from tre.kernels.dicom import discover_headers, load_series, slice_header
from tre.kernels.errors import MissingSliceError
from tre.kernels.forked_discovery import MAX_CHUNKS, ForkedDiscovery, chunk_files
from tre.kernels.job import run
from tre.kernels.timeline import main as timeline_main

REPO = Path(__file__).resolve().parents[2]
UID = "1.2.826.0.1.3680043.10.1013.77"


def _series(folder: Path, n: int = 6) -> tuple[np.ndarray, list[Path]]:
    raw = chest_phantom((n, 24, 20), seed=3)
    paths = write_series(folder, raw, spacing_zyx=(2.0, 0.9, 0.9), series_uid=UID)
    return raw, paths


def _rewrite(path: Path, change: dict[str, object], pixels: np.ndarray | None = None) -> None:
    """Rewrite a slice file in place, as a later writer would (its mtime moves on)."""
    before = path.stat().st_mtime_ns
    ds = pydicom.dcmread(path)
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    if pixels is not None:
        ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_RLE.dcm",
    ],
)
def test_slice_header_values_equal_pydicoms(name: str) -> None:
    path = Path(get_testdata_file(name))
    head = slice_header(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert head is not None
    assert head.series_uid == str(ds.SeriesInstanceUID)
    assert head.orientation == tuple(float(v) for v in ds.ImageOrientationPatient)
    assert head.position == tuple(float(v) for v in ds.ImagePositionPatient)
    assert head.pixel_spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert (head.rows, head.columns) == (int(ds.Rows), int(ds.Columns))
    assert head.bits_stored == int(ds.BitsStored)
    assert head.pixel_representation == int(ds.PixelRepresentation)
    assert head.slope == float(ds.get("RescaleSlope", 1.0) or 1.0)
    assert head.intercept == float(ds.get("RescaleIntercept", 0.0) or 0.0)
    assert head.transfer_syntax == str(ds.file_meta.TransferSyntaxUID)
    assert head.photometric == str(ds.PhotometricInterpretation).strip()


@pytest.mark.parametrize(
    "raw",
    [
        b"MONOCHROME2",
        b"MONOCHROME1 ",
        b"MONOCHROME2\0",
        b" MONOCHROME2",
        b"PALETTE COLOR ",
        b"A\\B",
        b"",
        b"YBR_FULL_422",
    ],
)
def test_code_strings_read_raw_equal_pydicoms(raw: bytes) -> None:
    """`header_values.text` (raw bytes for one plain word, pydicom for the rest) gives what
    pydicom's conversion gives, padding, a leading space, two values and empty included."""

    def dataset() -> pydicom.Dataset:
        ds = pydicom.Dataset()
        ds[0x00280004] = RawDataElement(Tag(0x00280004), "CS", len(raw), raw, 0, False, True)
        return ds

    assert hv.text(dataset(), "PhotometricInterpretation") == str(
        dataset().get("PhotometricInterpretation", "") or ""
    )
    assert hv.text(pydicom.Dataset(), "PhotometricInterpretation") == ""


def test_unusual_decimal_strings_fall_back_to_pydicom(tmp_path: Path) -> None:
    _raw, paths = _series(tmp_path / "s", n=3)
    _rewrite(paths[0], {"PixelSpacing": ["9.0E-1", "+0.90"], "RescaleIntercept": "-1024.0 "})
    head = slice_header(paths[0])
    assert head is not None
    assert head.pixel_spacing == (0.9, 0.9)
    assert head.intercept == -1024.0
    assert slice_header(Path(__file__)) is None  # not DICOM: skipped, as discovery always did


def test_loading_from_discovered_headers_equals_loading_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, paths = _series(tmp_path / "s")
    heads = discover_headers(tmp_path)[UID]
    reads: list[Path] = []
    real = dicom._read_slice_header
    monkeypatch.setattr(dicom, "_read_slice_header", lambda p: reads.append(p) or real(p))
    reused = load_series(heads)
    assert reads == []  # unchanged files: no header parsed again
    fresh = load_series(paths)
    assert reused.raw.tobytes() == fresh.raw.tobytes()
    assert np.array_equal(reused.raw, raw)
    assert reused.spacing == fresh.spacing and reused.files == fresh.files
    assert np.array_equal(reused.origin, fresh.origin)
    assert reused.header.SOPInstanceUID == fresh.header.SOPInstanceUID


def test_a_file_changed_after_discovery_is_read_again(tmp_path: Path) -> None:
    raw, _paths = _series(tmp_path / "s")
    heads = discover_headers(tmp_path)[UID]
    lowest = min(heads, key=lambda h: h.position[2] if h.position else 0.0)
    changed = (raw[0] + 100).astype(np.int16)
    _rewrite(lowest.path, {"ImageComments": "rewritten " * 9}, pixels=changed)  # pixels move on
    assert slice_header(lowest.path).pixel != lowest.pixel  # type: ignore[union-attr]
    series = load_series(heads)
    assert np.array_equal(series.raw[0], changed)  # today's pixels, not a stale offset's
    assert series.raw.tobytes() == load_series([h.path for h in heads]).raw.tobytes()


def test_a_slice_moved_after_discovery_is_refused_as_today(tmp_path: Path) -> None:
    _raw, _paths = _series(tmp_path / "s")
    heads = discover_headers(tmp_path)[UID]
    top = max(heads, key=lambda h: h.position[2] if h.position else 0.0)
    assert top.position is not None
    x, y, z = top.position
    _rewrite(top.path, {"ImagePositionPatient": [f"{x:g}", f"{y:g}", f"{z + 4.0:g}"]})
    with pytest.raises(MissingSliceError, match="missing"):
        load_series(heads)
    with pytest.raises(MissingSliceError, match="missing"):
        load_series([h.path for h in heads])


def test_a_file_removed_after_discovery_fails_the_load(tmp_path: Path) -> None:
    _series(tmp_path / "s")
    heads = discover_headers(tmp_path)[UID]
    heads[2].path.unlink()
    with pytest.raises(FileNotFoundError):
        load_series(heads)


# In a fresh interpreter: this test process may run other libraries' threads (zarr's), and
# the fork is (rightly) not used beside threads.
_FORKED = """
import os, sys
from pathlib import Path
from tre.kernels import forked_discovery as fd
from tre.kernels.dicom import discover_headers
root, processes, hold = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "hold"
parsed_here = []
if hold:  # the children wait until this process has taken every chunk
    gate_r, gate_w = os.pipe()
    child, take = fd._child, fd._take
    def held_child(*args):
        os.read(gate_r, 1)
        child(*args)
    def take_here(tokens):
        got = take(tokens)
        if got is None:
            os.write(gate_w, b"x" * processes)
        else:
            parsed_here.append(got)
        return got
    fd._child, fd._take = held_child, take_here
found = fd.ForkedDiscovery(root, processes=processes)
started = found.processes
same = found.result() == discover_headers(root)
print(started, same, found.result() is None, len(parsed_here))
"""


def _forked(root: Path, processes: int, hold: bool = False) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", _FORKED, str(root), str(processes), "hold" if hold else "-"]
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


def test_forked_discovery_returns_what_discovery_finds(tmp_path: Path) -> None:
    _series(tmp_path / "a", n=3)
    write_series(tmp_path / "b", chest_phantom((2, 8, 8)), spacing_zyx=(1.0, 1.0, 1.0), series_uid="1.2.3")
    (tmp_path / "README").write_text("not DICOM")
    assert _forked(tmp_path, 1) == "1 True True 0"  # one child, same groups, one answer per child


def test_forked_discovery_in_several_processes_keeps_the_order(tmp_path: Path) -> None:
    for i, n in enumerate((90, 110)):  # 200 files: three processes of ~67
        write_series(tmp_path / f"s{i}", chest_phantom((n, 8, 8)), spacing_zyx=(1.0, 1.0, 1.0))
    (tmp_path / "s1" / "notes.txt").write_text("not DICOM")
    assert _forked(tmp_path, 3) == "3 True True 0"
    assert _forked(tmp_path, 8) == "3 True True 0"  # at least 64 files a process


def test_this_process_parses_what_the_children_have_not_taken(tmp_path: Path) -> None:
    """The shares are not fixed: with its children held back, this process parses every
    chunk (201 files: 13 chunks of 16) and the groups and their order are the same."""
    for i, n in enumerate((90, 111)):
        write_series(tmp_path / f"s{i}", chest_phantom((n, 8, 8)), spacing_zyx=(1.0, 1.0, 1.0))
    assert _forked(tmp_path, 1, hold=True) == "1 True True 13"
    assert _forked(tmp_path, 3, hold=True) == "3 True True 13"


def test_chunks_fit_in_one_page_of_a_pipe() -> None:
    """Every chunk number is written before the children start: at most MAX_CHUNKS of them
    (4 KiB), so large cohorts get larger chunks."""
    assert chunk_files(2030) == 16 and -(-2030 // 16) == 127
    assert chunk_files(16 * MAX_CHUNKS) == 16
    assert chunk_files(16 * MAX_CHUNKS + 1) == 17
    assert -(-1_000_000 // chunk_files(1_000_000)) <= MAX_CHUNKS


def test_forked_discovery_is_not_used_beside_other_threads(tmp_path: Path) -> None:
    _series(tmp_path / "a", n=2)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        found = ForkedDiscovery(tmp_path)
        assert not found.started
        assert found.result() is None  # the job then discovers in-process
    finally:
        stop.set()
        other.join()


def test_timeline_records_the_stages_without_identifiers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _series(tmp_path / "in" / "s")
    write_series(
        tmp_path / "in" / "t", chest_phantom((4, 24, 20)), spacing_zyx=(2.0, 0.9, 0.9), series_uid="1.2.826.9"
    )
    timeline = tmp_path / "timeline.jsonl"
    monkeypatch.setenv("TRE_KERNELS_TIMELINE", str(timeline))
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--spacing", "1", "1", "1"]
    assert run([*args, "--format", "nii"]) == 0
    log = capsys.readouterr().out
    assert "timeline" not in log  # nothing about it in the researcher-facing log
    text = timeline.read_text()
    assert UID not in text and "1.2.826.9" not in text and str(tmp_path) not in text
    spans = [json.loads(line) for line in text.splitlines()]
    stages = {(s["stage"], s["series"]) for s in spans}
    for number in (1, 2):
        for stage in ("load", "pixels", "wait-load", "kernels", "write", "manifest"):
            assert (stage, number) in stages, (stage, number)
    assert {"start-up", "imports", "warm", "discover", "shutdown"} <= {s["stage"] for s in spans}
    assert all(0.0 <= s["start"] <= s["end"] for s in spans)
    start_up = next(s for s in spans if s["stage"] == "start-up")
    assert start_up["end"] <= min(s["start"] for s in spans if s["stage"] == "kernels")
    assert timeline_main([str(timeline)]) == 0
    summary = capsys.readouterr().out
    assert "tail_after_last_kernel" in summary and "first_kernel" in summary and "discover_end" in summary


def test_timeline_is_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _series(tmp_path / "in" / "s", n=3)
    monkeypatch.delenv("TRE_KERNELS_TIMELINE", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--spacing", "1", "1", "1"]
    assert run(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]
