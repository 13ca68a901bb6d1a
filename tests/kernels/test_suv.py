"""PET SUVbw per QIBA: the factor from tags, and refusals with a reason."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from tests.kernels.synth import write_series
from tre.kernels.dicom import load_all
from tre.kernels.errors import SuvError
from tre.kernels.suv import suvbw_factor, to_suvbw

F18_HALF_LIFE = 6586.2  # s


def pet_tags(**over: object) -> dict[str, object]:
    info = Dataset()
    info.RadionuclideTotalDose = "370000000"  # 370 MBq
    info.RadionuclideHalfLife = str(F18_HALF_LIFE)
    info.RadiopharmaceuticalStartTime = "093000"
    tags: dict[str, object] = {
        "Units": "BQML",
        "CorrectedImage": ["ATTN", "DECY", "SCAT"],
        "DecayCorrection": "START",
        "SeriesDate": "20240301",
        "SeriesTime": "103000",  # 60 min after injection
        "AcquisitionDate": "20240301",
        "AcquisitionTime": "103000",
        "PatientWeight": "75",
        "RadiopharmaceuticalInformationSequence": [info],
    }
    tags.update(over)
    return tags


def header(**over: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "PT"
    for k, v in pet_tags(**over).items():
        if v is not None:
            setattr(ds, k, v)
    return ds


def test_factor_decays_dose_to_series_time() -> None:
    expected = 75_000.0 / (370e6 * 2.0 ** (-3600.0 / F18_HALF_LIFE))
    assert suvbw_factor(header()) == pytest.approx(expected, rel=1e-12)


def test_admin_decay_correction_uses_injected_dose() -> None:
    assert suvbw_factor(header(DecayCorrection="ADMIN")) == pytest.approx(75_000.0 / 370e6)


def test_series_time_after_acquisition_falls_back_to_earliest_acquisition() -> None:
    from datetime import datetime

    ds = header(SeriesTime="120000")  # re-saved later by a workstation
    got = suvbw_factor(ds, earliest_acquisition=datetime(2024, 3, 1, 10, 0, 0))
    assert got == pytest.approx(75_000.0 / (370e6 * 2.0 ** (-1800.0 / F18_HALF_LIFE)))


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"Units": "CNTS"}, "Units is CNTS, not BQML"),
        ({"Units": None}, "needs Units"),
        ({"CorrectedImage": ["ATTN"]}, "not DECY corrected"),
        ({"DecayCorrection": "NONE"}, "DecayCorrection NONE is not supported"),
        ({"PatientWeight": None}, "needs PatientWeight"),
        ({"PatientWeight": "0"}, "not a positive body weight"),
        ({"RadiopharmaceuticalInformationSequence": None}, "needs RadiopharmaceuticalInformationSequence"),
        ({"SeriesTime": "083000"}, "after the scan reference time"),
    ],
)
def test_refuses_with_reason(over: dict[str, object], message: str) -> None:
    with pytest.raises(SuvError, match=message):
        suvbw_factor(header(**over))


def test_missing_half_life_in_sequence() -> None:
    ds = header()
    del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife
    with pytest.raises(SuvError, match="needs RadionuclideHalfLife"):
        suvbw_factor(ds)


def test_to_suvbw_on_written_series(tmp_path: Path) -> None:
    raw = np.random.default_rng(1).integers(0, 30000, size=(3, 6, 6)).astype(np.int16)
    write_series(
        tmp_path,
        raw,
        spacing_zyx=(3.0, 2.0, 2.0),
        modality="PT",
        slopes=[0.5, 0.25, 2.0],
        intercepts=[0.0, 0.0, 0.0],
        extra=pet_tags(),
    )
    (series,) = load_all(tmp_path)
    suv, factor = to_suvbw(series)
    assert math.isclose(factor, 75_000.0 / (370e6 * 2.0 ** (-3600.0 / F18_HALF_LIFE)), rel_tol=1e-12)
    assert np.allclose(suv.values(), series.values() * factor)
