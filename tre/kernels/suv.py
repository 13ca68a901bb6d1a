"""PET body-weight SUV (SUVbw) from DICOM tags, following the QIBA vendor-neutral recipe.

SUVbw = activity concentration (Bq/mL) * body weight (g) / injected dose decayed to the
scan reference time (Bq). The factor is only meaningful for attenuation- and decay-
corrected images in BQML, so anything else is refused with the reason instead of producing
plausible-looking but wrong numbers.

An Enhanced PET image (one multi-frame file, `tre.kernels.multiframe`) records the same facts
in other tags, which `enhanced_suvbw_factor` reads: the units are the Pixel Value
Transformation's RescaleType (BQML), the corrections are AttenuationCorrected and
DecayCorrected (YES), and the time the frames are decay-corrected to is stated outright
(DecayCorrectionDateTime), so the QIBA rules for guessing it from SeriesTime are not needed.
An enhanced header that keeps the classic tags at the top level (Units) takes the classic path.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from pydicom.dataset import Dataset

from tre.kernels.dicom import Series, read_dataset
from tre.kernels.errors import SuvError

# GE's private "post-processing-independent" scan datetime, which QIBA prefers when present.
_GE_SCAN_DATETIME = (0x0009, 0x100D)


def _parse_da_tm(date: str, time: str, what: str) -> datetime:
    date = date.strip()
    time = time.strip()
    if len(date) != 8 or not date.isdigit() or len(time) < 2:
        raise SuvError(f"malformed {what}: date {date!r} time {time!r}")
    whole, _, frac = time.partition(".")
    whole = whole.ljust(6, "0")
    try:
        base = datetime.strptime(date + whole[:6], "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise SuvError(f"malformed {what}: {date} {time}") from exc
    return base + timedelta(microseconds=int((frac + "000000")[:6]) if frac else 0)


def _parse_dt(value: str, what: str) -> datetime:
    value = value.strip()
    for sep in ("+", "-"):  # drop a UTC offset; all times of one study share the clock
        if sep in value[8:]:
            value = value[: 8 + value[8:].index(sep)]
    return _parse_da_tm(value[:8], value[8:] or "000000", what)


def _require(ds: Dataset, keyword: str, why: str) -> object:
    value = ds.get(keyword)
    if value is None or value == "":
        raise SuvError(f"PET SUVbw needs {keyword} ({why}); it is missing")
    return value


def scan_reference_time(header: Dataset, earliest_acquisition: datetime | None) -> datetime:
    """QIBA: SeriesDate/Time, unless it is after the first acquisition (post-processed)."""
    series = _parse_da_tm(
        str(_require(header, "SeriesDate", "decay reference date")),
        str(_require(header, "SeriesTime", "decay reference time")),
        "SeriesDate/SeriesTime",
    )
    if earliest_acquisition is None or series <= earliest_acquisition:
        return series
    if _GE_SCAN_DATETIME in header and str(header[_GE_SCAN_DATETIME].value).strip():
        return _parse_dt(str(header[_GE_SCAN_DATETIME].value), "GE private scan datetime")
    return earliest_acquisition


def _weight_and_dose(header: Dataset) -> tuple[float, Dataset, float, float]:
    """Body weight (kg), the radiopharmaceutical item, injected dose (Bq) and half-life (s):
    what SUVbw needs from classic and enhanced PET alike, each checked to be positive."""
    weight = float(_require(header, "PatientWeight", "body weight in kg"))  # type: ignore[arg-type]
    if not weight > 0:
        raise SuvError(f"PatientWeight {weight} kg is not a positive body weight")
    seq = header.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        raise SuvError("PET SUVbw needs RadiopharmaceuticalInformationSequence; it is missing")
    info = seq[0]
    dose = float(_require(info, "RadionuclideTotalDose", "injected activity in Bq"))  # type: ignore[arg-type]
    half_life = float(_require(info, "RadionuclideHalfLife", "in seconds"))  # type: ignore[arg-type]
    if not dose > 0 or not half_life > 0:
        raise SuvError(
            f"RadionuclideTotalDose {dose} Bq / RadionuclideHalfLife {half_life} s must be positive"
        )
    return weight, info, dose, half_life


def suvbw_factor(header: Dataset, earliest_acquisition: datetime | None = None) -> float:
    """Multiplier from Bq/mL to SUVbw (g/mL) for the series described by ``header``."""
    if str(header.get("Modality", "")) != "PT":
        raise SuvError(f"SUVbw is for PET (Modality PT), not {header.get('Modality', 'unknown')}")
    units = str(_require(header, "Units", "must be BQML")).upper()
    if units != "BQML":
        raise SuvError(f"PET Units is {units}, not BQML: SUVbw needs activity concentration in Bq/mL")
    flags: Any = _require(header, "CorrectedImage", "must list ATTN and DECY")
    corrected = {str(flags).upper()} if isinstance(flags, str) else {str(v).upper() for v in flags}
    lacking = {"ATTN", "DECY"} - corrected
    if lacking:
        raise SuvError(
            f"PET image is not {'/'.join(sorted(lacking))} corrected (CorrectedImage {sorted(corrected)})"
        )
    decay = str(_require(header, "DecayCorrection", "START or ADMIN")).upper()
    if decay not in ("START", "ADMIN"):
        raise SuvError(f"PET DecayCorrection {decay} is not supported (need START or ADMIN)")
    weight, info, dose, half_life = _weight_and_dose(header)
    if decay == "ADMIN":  # already decay-corrected to the injection time
        return weight * 1000.0 / dose
    if info.get("RadiopharmaceuticalStartDateTime"):
        injected = _parse_dt(str(info.RadiopharmaceuticalStartDateTime), "RadiopharmaceuticalStartDateTime")
    else:
        start = str(_require(info, "RadiopharmaceuticalStartTime", "injection time"))
        injected = _parse_da_tm(
            str(_require(header, "SeriesDate", "injection date")), start, "injection time"
        )
    scan = scan_reference_time(header, earliest_acquisition)
    elapsed = (scan - injected).total_seconds()
    if elapsed < 0:
        raise SuvError(
            f"injection time {injected.isoformat()} is after the scan reference time {scan.isoformat()}"
        )
    decayed = dose * math.pow(2.0, -elapsed / half_life)
    return weight * 1000.0 / decayed


def _is_enhanced(header: Dataset) -> bool:
    """A multi-frame header with functional groups and without the classic PET Units."""
    groups = "SharedFunctionalGroupsSequence" in header or "PerFrameFunctionalGroupsSequence" in header
    return groups and "Units" not in header


def _rescale_types(header: Dataset) -> set[str]:
    """RescaleType of the Pixel Value Transformation, shared or of every frame."""
    found: set[str] = set()
    for groups in (
        header.get("SharedFunctionalGroupsSequence") or [],
        header.get("PerFrameFunctionalGroupsSequence") or [],
    ):
        for group in groups:
            for item in group.get("PixelValueTransformationSequence") or []:
                if item.get("RescaleType"):
                    found.add(str(item.RescaleType).strip().upper())
    return found


def enhanced_suvbw_factor(header: Dataset) -> float:
    """Multiplier from Bq/mL to SUVbw (g/mL) for an Enhanced PET multi-frame image."""
    if str(header.get("Modality", "")) != "PT":
        raise SuvError(f"SUVbw is for PET (Modality PT), not {header.get('Modality', 'unknown')}")
    units = _rescale_types(header)
    if units != {"BQML"}:
        shown = "/".join(sorted(units)) or "missing"
        raise SuvError(
            f"enhanced PET RescaleType is {shown}, not BQML: SUVbw needs activity concentration in Bq/mL"
        )
    for keyword in ("AttenuationCorrected", "DecayCorrected"):
        flag = str(_require(header, keyword, "must be YES")).strip().upper()
        if flag != "YES":
            raise SuvError(
                f"enhanced PET image has {keyword} {flag}: SUVbw needs attenuation- and decay-corrected data"
            )
    reference = _parse_dt(
        str(_require(header, "DecayCorrectionDateTime", "decay reference")), "DecayCorrectionDateTime"
    )
    weight, info, dose, half_life = _weight_and_dose(header)
    injected = _parse_dt(
        str(_require(info, "RadiopharmaceuticalStartDateTime", "injection date and time")),
        "RadiopharmaceuticalStartDateTime",
    )
    elapsed = (reference - injected).total_seconds()
    if elapsed < 0:
        raise SuvError(
            f"injection time {injected.isoformat()} is after the decay reference time {reference.isoformat()}"
        )
    return weight * 1000.0 / (dose * math.pow(2.0, -elapsed / half_life))


def earliest_acquisition(series: Series) -> datetime | None:
    """First AcquisitionDate/Time over the series' files (headers only), if recorded."""
    found: list[datetime] = []
    for path in series.files:
        ds = read_dataset(path, stop_before_pixels=True)
        if ds.get("AcquisitionDate") and ds.get("AcquisitionTime"):
            found.append(
                _parse_da_tm(str(ds.AcquisitionDate), str(ds.AcquisitionTime), "AcquisitionDate/Time")
            )
    return min(found) if found else None


def to_suvbw(series: Series) -> tuple[Series, float]:
    """The series with SUVbw folded into its per-slice rescale, and the factor used."""
    if _is_enhanced(series.header):
        factor = enhanced_suvbw_factor(series.header)
    else:
        factor = suvbw_factor(series.header, earliest_acquisition(series))
    return series.with_rescale(series.slopes * factor, series.intercepts * factor), factor


__all__ = ["earliest_acquisition", "enhanced_suvbw_factor", "scan_reference_time", "suvbw_factor", "to_suvbw"]
