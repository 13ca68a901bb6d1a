"""Files real archives hold that are neither the common case nor garbage.

Why these: a sweep of every pydicom test file through the job, one file per series, found a
retired but valid transfer syntax (Explicit VR Big Endian) failing as an "internal failure"
(the kernels take the machine's byte order only) and a malformed header value doing the
same; and pydicom's warnings about what it copes with reaching the job log with text from
the files. A cohort must preprocess the first, refuse the second in one line as a bad series,
and keep the log to progress lines.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.kernels.test_cohort import DONE, argv, job_process, make_cohort, manifest
from tre.kernels.dicom import load_series
from tre.kernels.job import run
from tre.kernels.progress import SeriesResult, parse

REPO = Path(__file__).resolve().parents[2]


def one_file_series(root: Path, name: str) -> Path:
    folder = root / name.removesuffix(".dcm")
    folder.mkdir(parents=True)
    return Path(shutil.copy(get_testdata_file(name), folder))


def test_big_endian_slices_load_in_native_order() -> None:
    little = load_series([get_testdata_file("MR_small.dcm")]).raw
    big = load_series([get_testdata_file("MR_small_bigendian.dcm")]).raw
    assert big.dtype.isnative and big.dtype == little.dtype
    np.testing.assert_array_equal(big, little)


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_expb.dcm"])
def test_big_endian_series_gives_the_little_endian_output(tmp_path: Path, name: str) -> None:
    one_file_series(tmp_path / "le", "MR_small.dcm")
    one_file_series(tmp_path / "be", name)
    for side in ("le", "be"):
        assert run(argv(tmp_path / side, tmp_path / f"out-{side}", "--format", "nii")) == 0
    (le,) = (tmp_path / "out-le" / "series").glob("*.nii")
    (be,) = (tmp_path / "out-be" / "series").glob("*.nii")
    np.testing.assert_array_equal(np.asarray(nib.load(be).dataobj), np.asarray(nib.load(le).dataobj))


def test_malformed_header_value_fails_its_series_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_cohort(tmp_path / "in", n_good=2, bad=False)
    one_file_series(tmp_path / "in", "badVR.dcm")  # NumberOfFrames "1A"
    bad_uid = str(pydicom.dcmread(get_testdata_file("badVR.dcm"), stop_before_pixels=True).SeriesInstanceUID)
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    entry = manifest(tmp_path / "out")["series"][bad_uid]
    assert entry["status"] == "failed"
    assert "malformed NumberOfFrames" in entry["reason"] and "internal" not in entry["reason"]
    results = [p for p in map(parse, capsys.readouterr().out.splitlines()) if isinstance(p, SeriesResult)]
    assert [r.reason for r in results if r.outcome == "failed"] == ["invalid-series"]


def test_pydicom_warnings_stay_out_of_the_job_log(tmp_path: Path) -> None:
    one_file_series(tmp_path / "in", "MR_small_padded.dcm")  # pydicom warns about excess padding
    proc = job_process(tmp_path / "in", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert DONE.match(proc.stdout.splitlines()[-1])
