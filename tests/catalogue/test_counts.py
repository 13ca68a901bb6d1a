"""Count queries on real DICOM files: suppression at the threshold, rounding, conditions,
the cached facts following the data, and the audit record of every query (SQLite and
PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydantic import ValidationError
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import Engine, select

from tests.catalogue.support import lung_cohort, policy_folder, write_series
from tests.worlds import WorldFactory
from tre.catalogue.counts import COUNT_QUERY_ACTION, answer_count_query, answers_by_dataset
from tre.catalogue.disclosure import release_count
from tre.catalogue.models import CountQuery
from tre.config import Settings
from tre.errors import PolicyUnavailable
from tre.registry import register_dataset
from tre.store.db import session_scope
from tre.store.models import AuditEntry, User


@pytest.fixture
def csettings(settings: Settings, tmp_path: Path) -> Settings:
    settings.policies_dir = policy_folder(tmp_path / "policies")
    return settings


@pytest.fixture
def lung(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "lung"
    lung_cohort(folder)
    return folder


def _register(
    engine: Engine, dataset_id: str, folder: Path, policy: str, conditions: tuple[str, ...] = ()
) -> None:
    with session_scope(engine) as s:
        if s.get(User, "root") is None:
            WorldFactory(s).users({"root": ["admin"]})
        register_dataset(s, "root", dataset_id, dataset_id, folder, policy=policy, conditions=conditions)


def _ask(engine: Engine, settings: Settings, **fields: str) -> dict[str, object]:
    with session_scope(engine) as s:
        answer = answer_count_query(s, settings, CountQuery(**fields), actor="alice")
        return {k: v.model_dump() for k, v in answers_by_dataset(answer).items()}


@pytest.mark.parametrize(
    ("true", "min_count", "round_to", "shown"),
    [
        (0, 10, 5, None),
        (9, 10, 5, None),
        (10, 10, 5, 10),
        (12, 10, 5, 10),
        (13, 10, 5, 15),
        (17, 10, 5, 15),
        (18, 10, 5, 20),
        (3, 3, 1, 3),
        (2, 3, 1, None),
        (25, 20, 10, 30),
    ],
)
def test_release_rule(true: int, min_count: int, round_to: int, shown: int | None) -> None:
    assert release_count(true, min_count, round_to) == shown


def test_suppression_at_the_threshold_and_rounding(
    engine_any: Engine, csettings: Settings, lung: Path
) -> None:
    _register(engine_any, "lung", lung, "default", ("icd10:C34",))
    everything = _ask(engine_any, csettings)["lung"]
    # 12 subjects -> 10; 21 studies -> 20 (rounded to 5, halves up)
    assert (everything["subjects"], everything["studies"]) == (10, 20)
    assert (everything["min_count"], everything["round_to"]) == (10, 5)
    assert not everything["subjects_suppressed"] and not everything["studies_suppressed"]
    pet = _ask(engine_any, csettings, modality="PT")["lung"]  # exactly 10: shown
    assert (pet["subjects"], pet["subjects_suppressed"], pet["studies"]) == (10, False, 10)
    mr = _ask(engine_any, csettings, modality="mr")["lung"]  # 9: withheld, not "<10"
    assert (mr["subjects"], mr["subjects_suppressed"], mr["studies"], mr["studies_suppressed"]) == (
        None,
        True,
        None,
        True,
    )
    ct_chest = _ask(engine_any, csettings, modality="CT", body_part="chest", condition="ICD10:c34")["lung"]
    assert (ct_chest["subjects"], ct_chest["studies"]) == (10, 10)
    head_ct = _ask(engine_any, csettings, modality="CT", body_part="HEAD")["lung"]  # zero: withheld too
    assert head_ct["subjects_suppressed"] and head_ct["subjects"] is None
    other = _ask(engine_any, csettings, condition="icd10:C50")["lung"]
    assert other["subjects"] is None and other["studies_suppressed"]


def test_studies_of_a_small_group_are_withheld_with_it(
    engine: Engine, csettings: Settings, tmp_path: Path
) -> None:
    """Three patients scanned five times each: 15 studies, but of fewer than 10 people."""
    folder = tmp_path / "data" / "followup"
    for n in range(3):
        for _ in range(5):
            write_series(folder, f"F{n}", generate_uid(), "CT", "CHEST")
    _register(engine, "followup", folder, "default")
    got = _ask(engine, csettings, modality="CT")["followup"]
    assert (got["subjects"], got["studies"]) == (None, None)
    assert got["subjects_suppressed"] and got["studies_suppressed"]


def test_every_query_is_in_the_audit_log(engine_any: Engine, csettings: Settings, lung: Path) -> None:
    _register(engine_any, "lung", lung, "default")
    with session_scope(engine_any) as s:
        answer = answer_count_query(s, csettings, CountQuery(modality="MR", body_part="HEAD"), actor="alice")
    with session_scope(engine_any) as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == COUNT_QUERY_ACTION)))
    assert len(rows) == 1 and rows[0].actor == "alice"
    details = json.loads(rows[0].body)["details"]
    assert details["query_id"] == answer.query_id
    assert details["query"] == {"modality": "MR", "body_part": "HEAD", "condition": None}
    (entry,) = details["answers"]
    assert entry["dataset"] == "lung"
    assert entry["subjects_suppressed"] and entry["studies_suppressed"]
    assert entry["subjects"] is None and entry["policy"] == "default"


def test_counts_match_pydicoms_own_reading_of_its_test_files(
    engine: Engine, csettings: Settings, tmp_path: Path
) -> None:
    """Real files from pydicom's test data, counted with a policy that shows every figure;
    the expected numbers are computed here by reading the same files independently."""
    source = Path(get_testdata_file("CT_small.dcm")).parent
    expected_subjects: set[str] = set()
    expected_studies: set[str] = set()
    for path in source.rglob("*"):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not every test file is DICOM
            continue
        if str(ds.get("Modality", "")) == "CT" and ds.get("PatientID") and ds.get("StudyInstanceUID"):
            expected_subjects.add(str(ds.PatientID))
            expected_studies.add(str(ds.StudyInstanceUID))
    assert len(expected_subjects) >= 2  # the data is meaningful for the test
    _register(engine, "samples", source, "exact")
    got = _ask(engine, csettings, modality="CT")["samples"]
    assert got["subjects"] == len(expected_subjects)
    assert got["studies"] == len(expected_studies)
    assert (got["min_count"], got["round_to"]) == (1, 1)


def test_limits_come_from_the_sdc_section_when_the_catalogue_has_none(
    engine: Engine, csettings: Settings, lung: Path
) -> None:
    _register(engine, "lung", lung, "coarse")
    got = _ask(engine, csettings, modality="CT")["lung"]
    assert (got["subjects"], got["min_count"], got["round_to"]) == (10, 10, 5)


def test_unlisted_datasets_take_no_part(engine: Engine, csettings: Settings, lung: Path) -> None:
    _register(engine, "lung", lung, "unlisted")
    assert _ask(engine, csettings) == {}


def test_cached_facts_follow_the_data(engine: Engine, csettings: Settings, lung: Path) -> None:
    _register(engine, "lung", lung, "exact")
    assert _ask(engine, csettings, modality="CT")["lung"]["subjects"] == 12
    lung_cohort(lung, range(13, 16))  # three more subjects arrive
    csettings.catalogue_recheck_s = 3600.0
    assert _ask(engine, csettings, modality="CT")["lung"]["subjects"] == 12  # checked recently
    csettings.catalogue_recheck_s = 0.0
    assert _ask(engine, csettings, modality="CT")["lung"]["subjects"] == 15
    for f in (lung / "S15").iterdir():
        f.unlink()
    assert _ask(engine, csettings, modality="CT")["lung"]["subjects"] == 14


def test_a_policy_that_cannot_be_loaded_answers_nothing(
    engine: Engine, csettings: Settings, lung: Path
) -> None:
    _register(engine, "lung", lung, "exact")
    (Path(str(csettings.policies_dir)) / "exact.yaml").write_text("name: exact\nversion: '1'\nnope: 1\n")
    with pytest.raises(PolicyUnavailable), session_scope(engine) as s:
        answer_count_query(s, csettings, CountQuery())


@pytest.mark.parametrize(
    "fields",
    [
        {"modality": "XX"},
        {"modality": "CT; DROP"},
        {"body_part": "CHEST/LUNG"},
        {"body_part": "chest\x00"},
        {"body_part": "A" * 17},
        {"condition": "C34"},
        {"condition": "icd10:lung cancer"},
        {"condition": "mesh:D008175"},
        {"sex": "F"},
    ],
)
def test_queries_stay_inside_the_vocabulary(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        CountQuery(**fields)  # type: ignore[arg-type]
