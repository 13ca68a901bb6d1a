"""Round 15 of the planted-leak run (leaks19): prose shares said with what people had or
underwent, counts with their share in brackets, proportions named ``share``; the false alarms
of undirected changes, data shares, metric phrases and clauses on things; the cohort counted
from clinical tables and linked IDs, and counted once. OCR is off."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest

from egress_review.checks import identifiers
from egress_review.checks.identifiers import dataset_patients, gather_identifiers
from egress_review.checks.shares import is_metric
from tests.egress import planted_round15
from tests.egress.planted_corpus import CT_SMALL, build_dataset
from tests.egress.planted_round14 import COHORT, build_cohort
from tests.egress.planted_round15 import PROSE, REQUEST_SHARE
from tests.egress.round_harness import (
    benign_test,
    by_name,
    leak_test,
    limits_test,
    round_fixtures,
)

LEAKS, BENIGN, LIMITS = by_name(planted_round15)
UNCERTAIN = (REQUEST_SHARE, PROSE)  # flagged for the reviewers, not blocked


# round 14's 33-patient dataset, and the project's earlier release (round 9's)
policy, context = round_fixtures(dataset=build_cohort)


test_round15_leak_is_caught_by_its_class = leak_test(LEAKS, UNCERTAIN)


test_round15_benign_output_raises_no_false_alarm = benign_test(BENIGN)


test_round15_known_limits_are_as_documented = limits_test(LIMITS)


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 16 and len(BENIGN) == 18 and len(LIMITS) == 1


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("false positive rate", True),  # a metric's phrase: its initials
        ("positive predictive value", True),
        ("area under the curve", True),
        ("root mean squared error", True),
        ("intersection over union", True),
        ("false_positive_rate", True),
        ("patients with false positive result", False),  # a word for people wins
        ("relapse free rate", False),  # initials "rfr": no metric
        ("missing_pct", True),  # the data's share
        ("pct_missing_values", True),
        ("completeness_pct", True),
        ("train_share", True),
        ("patients_missing_pct", False),
        ("completed_pct", False),  # an outcome, not the data's completeness
        ("volume_change_pct", True),  # a change with no direction
        ("hu_shift_pct", True),
        ("diameter_delta", True),
        ("volume_reduction_pct", False),  # a change with a direction
        ("weight_loss_pct", False),
    ],
)
def test_what_makes_a_share_no_ones(name: str, metric: bool) -> None:
    assert is_metric(name) is metric


def test_is_metric_asks_for_people_once_a_word(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each word is asked once whether it names people (before leaks19: twice, once in
    `is_metric` and again in the metric test it called)."""
    from egress_review.checks import text_counts

    asked: list[str] = []
    real = text_counts.people_word

    def counting(word: str) -> bool:
        asked.append(word)
        return real(word)

    monkeypatch.setattr(text_counts, "people_word", counting)
    assert is_metric("dice_pct")
    assert sorted(asked) == ["dice", "pct"]


def test_an_undirected_change_is_named_for_the_row_rule() -> None:
    from egress_review.checks.shares import undirected_change  # new in leaks19

    assert undirected_change("volume_change_pct") and undirected_change("hu_shift_pct")
    assert not undirected_change("volume_reduction_pct")
    assert not undirected_change("mean_volume_change_pct")  # a statistic: a metric anyway
    assert not undirected_change("patients_with_volume_change_pct")


def _headers(root: Path, ids: list[tuple[str, list[str]]]) -> Path:
    """One CT slice per (PatientID, its OtherPatientIDs)."""
    root.mkdir(parents=True, exist_ok=True)
    src = pydicom.dcmread(CT_SMALL)
    for i, (patient_id, others) in enumerate(ids):
        ds = copy.deepcopy(src)
        ds.PatientID = patient_id
        if others:
            ds.OtherPatientIDs = others
        ds.save_as(root / f"h{i:03d}.dcm", enforce_file_format=True)
    return root


def test_a_clinical_table_counts_its_patients(tmp_path: Path) -> None:
    """A dataset of clinical tables only has a cohort (None before leaks19); a table beside the
    DICOM adds the patients it lists that have no images, and none it shares with them; a
    table that shares no ID with the headers adds no one."""
    tables = tmp_path / "tables"
    tables.mkdir()
    rows = "".join(f"P{i:03d},{i % 3}\n" for i in range(COHORT))
    (tables / "clinical.csv").write_text("patient_id,stage\n" + rows)
    assert len(dataset_patients(tables)) == COHORT
    both = _headers(tmp_path / "both", [(f"P{i:03d}", []) for i in range(30)])
    (both / "clinical.tsv").write_text("Subject ID\tage\n" + "".join(f"P{i:03d}\t60\n" for i in range(33)))
    assert len(dataset_patients(both)) == COHORT
    # keyed by another number than the headers: maybe the same people, maybe not; left out
    other = _headers(tmp_path / "other", [(f"P{i:03d}", []) for i in range(30)])
    (other / "pathology.csv").write_text("mrn\n" + "".join(f"MRN-{i}\n" for i in range(30)))
    assert len(dataset_patients(other)) == 30
    assert len(dataset_patients(build_dataset(tmp_path / "planted"))) == 1  # its MRN table too


def test_a_clinical_table_row_joins_its_ids(tmp_path: Path) -> None:
    """A row that lists a PatientID beside an MRN says they are one person."""
    root = _headers(tmp_path / "ds", [(f"P{i:03d}", []) for i in range(3)])
    (root / "ids.csv").write_text("patient_id,mrn\nP000,MRN-9\nP001,MRN-8\n")
    assert len(dataset_patients(root)) == 3


def test_linked_patient_ids_are_one_patient(tmp_path: Path) -> None:
    """A header whose OtherPatientIDs names another header's PatientID is the same person
    (two before leaks19); an other-ID that is no patient's (CT_small's stale sequence) joins
    no one."""
    ids = [("P000", ["P000-OLD"]), ("P000-OLD", []), ("P001", []), ("P002", ["ELSEWHERE"])]
    root = _headers(tmp_path / "ds", ids)
    patients = dataset_patients(root)
    assert len(patients) == 3
    assert frozenset({"P000", "P000-OLD"}) in patients


def test_the_request_context_joins_the_datasets_patients(tmp_path: Path) -> None:
    """`checking.make_context`: a tables-only dataset counts (None before); a person in two
    datasets, under a linked ID in one, is one."""
    from egress_review.checking import make_context
    from tre.store.models import Dataset

    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "clinical.csv").write_text("mrn\nMRN-1\nMRN-2\n")
    tables = Dataset(id="d3", name="d3", path=str(tmp_path / "tables"))
    assert make_context(set(), 1, 0, [tables]).cohort_size == 2
    first = _headers(tmp_path / "first", [("P000", []), ("P001", [])])
    second = _headers(tmp_path / "second", [("P001", ["P001-B"]), ("P001-B", []), ("P002", [])])
    datasets = [Dataset(id=f"d{i}", name="d", path=str(p)) for i, p in enumerate((first, second))]
    assert make_context(set(), 1, 0, datasets).cohort_size == 3


def test_a_dataset_cached_by_an_identifier_scan_is_not_scanned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dataset_patients` reuses the scan `gather_identifiers` cached, whichever was used last
    (before leaks19 the two caches aged apart: a dataset whose identifiers were cached and
    recently read was scanned again for its patients)."""
    monkeypatch.setattr(identifiers, "CACHE_DATASETS", 2)
    monkeypatch.setattr(identifiers, "_CACHE", type(identifiers._CACHE)())
    reads: list[Path] = []
    real = pydicom.dcmread

    def counting(path: Path, *args: object, **kwargs: object) -> pydicom.Dataset:
        reads.append(Path(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(identifiers.pydicom, "dcmread", counting)
    roots = [build_cohort(tmp_path / f"d{i}", patients=2) for i in range(3)]
    gather_identifiers(roots[0])
    gather_identifiers(roots[1])
    gather_identifiers(roots[0])  # read again: the most recent
    gather_identifiers(roots[2])  # the cache keeps two: roots[1] goes
    reads.clear()
    assert len(dataset_patients(roots[0])) == 2
    assert reads == []
