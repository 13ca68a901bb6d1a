"""Identifiers from the dataset's DICOM headers in free text, logs, JSON and file names."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from egress_review.checks import CheckContext, CheckResult, gather_identifiers, run_checks, worst
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
STUDY_UID = "1.2.826.0.1.3680043.8.498.123456789012345"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


def write_header(path: Path, name: str, pid: str, **extra: object) -> None:
    ds = Dataset()
    ds.PatientName = name
    ds.PatientID = pid
    ds.StudyInstanceUID = STUDY_UID
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    for key, value in extra.items():
        setattr(ds, key, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    other = Dataset()
    other.PatientID = "HOSP-77-1234"
    write_header(
        root / "pat1" / "series1" / "IM0001",  # no extension: found by the DICM magic
        "Doe^Jane^Marie",
        "MRN0012345",
        AccessionNumber="ACC778899",
        PatientBirthDate="19650412",
        OtherPatientIDsSequence=[other],
    )
    write_header(root / "pat2" / "slice.dcm", "Okonkwo^Chidi", "MRN0099999")
    (root / "README.txt").write_text("collection notes, not DICOM\n")
    (root / "broken.dcm").write_bytes(b"not really dicom")
    return root


@pytest.fixture(scope="module")
def context(dataset: Path) -> CheckContext:
    return CheckContext(identifiers=gather_identifiers(dataset), file_count=1, total_size=0)


def check(
    tmp_path: Path, policy: Policy, context: CheckContext, text: str, name: str = "run.log"
) -> list[CheckResult]:
    path = tmp_path / name
    path.write_text(text)
    return run_checks(path, name, policy, context)


def only(results: list[CheckResult], name: str) -> CheckResult:
    (found,) = [r for r in results if r.check == name]
    return found


def test_gather_identifiers_reads_headers_recursively(dataset: Path) -> None:
    ids = gather_identifiers(dataset)
    assert {"Doe^Jane^Marie", "Doe", "Jane", "Marie", "MRN0012345", "ACC778899", "HOSP-77-1234"} <= ids
    assert {"Okonkwo^Chidi", "Okonkwo", "Chidi", "MRN0099999", STUDY_UID} <= ids
    with pytest.raises(FileNotFoundError):
        gather_identifiers(dataset / "missing")


def test_gather_identifiers_cache_sees_new_files(tmp_path: Path) -> None:
    write_header(tmp_path / "a.dcm", "First^Person", "PID0000001")
    assert "PID0000001" in gather_identifiers(tmp_path)
    write_header(tmp_path / "b.dcm", "Second^Person", "PID0000002")
    again = gather_identifiers(tmp_path)
    assert {"PID0000001", "PID0000002", "Second"} <= again
    again.add("mutated")  # callers get a copy, never the cached set
    assert "mutated" not in gather_identifiers(tmp_path)


def test_patient_name_in_log_is_blocked(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    log = "epoch 1 loss 0.52\nloading case for JANE DOE from /data\nepoch 2 loss 0.31\n"
    results = check(tmp_path, policy, context, log)
    assert worst(results) == "block"
    hit = only(results, "identifiers")
    assert hit.outcome == "block"
    assert {m["line"] for m in hit.evidence["matches"]} == {2}
    # masked: the reviewer sees the kind, the queue does not store the name
    assert "Jane" not in json.dumps(hit.evidence) and "J**e" in json.dumps(hit.evidence)


@pytest.mark.parametrize(
    "line",
    [
        "subject okonkwo failed QC",
        "wrote /out/mrn0012345_mask.nii",
        "patient=MRN0099999;slices=120",
        "other id HOSP-77-1234 seen",
        "saved id_hosp-77-1234.png",
        "accession ACC778899",
        "dob=19650412",
        f"study {STUDY_UID} done",
        "name: Doe, Jane",
    ],
)
def test_identifier_variants_are_found(
    tmp_path: Path, policy: Policy, context: CheckContext, line: str
) -> None:
    assert only(check(tmp_path, policy, context, line + "\n"), "identifiers").outcome == "block"


def test_clean_log_passes_and_no_substring_false_positives(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    log = "epoch 1 loss 0.52\nJaneway model converged\nDoesn't matter\nsaved 12 masks\n"
    results = check(tmp_path, policy, context, log)
    assert worst(results) == "pass", [r for r in results if r.outcome != "pass"]


def test_identifiers_in_json_and_csv_cells(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    doc = json.dumps({"cases": [{"id": "MRN0012345", "volume_ml": 12.1}]})
    assert only(check(tmp_path, policy, context, doc, "metrics.json"), "identifiers").outcome == "block"
    table = "patient,volume\nMRN0012345,12.1\nMRN0099999,9.2\n"
    assert only(check(tmp_path, policy, context, table, "vol.csv"), "identifiers").outcome == "block"


def test_identifier_hidden_by_json_unicode_escapes(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    doc = '{"case": "\\u004fkonkwo", "dice": 0.91}'
    results = check(tmp_path, policy, context, doc, "metrics.json")
    assert only(results, "identifiers").outcome == "pass"  # the raw bytes do not contain it...
    assert only(results, "identifiers:json_decoded").outcome == "block"  # ...the decoded string does


def test_identifier_in_file_name(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    results = check(tmp_path, policy, context, "ok\n", "jane_doe_overlay.txt")
    assert only(results, "file_name").outcome == "block"


def test_no_identifiers_known_passes_with_reason(tmp_path: Path, policy: Policy) -> None:
    results = check(tmp_path, policy, CheckContext(), "loading case for JANE DOE\n")
    ident = only(results, "identifiers")
    assert ident.outcome == "pass" and ident.evidence == {"identifiers_known": 0}


def test_ignored_and_short_identifiers(tmp_path: Path, policy: Policy) -> None:
    ctx = CheckContext(identifiers={"ANONYMOUS", "Li", "123", "LIDC-IDRI-0042"})
    assert worst(check(tmp_path, policy, ctx, "ANONYMOUS li 123 LIDC-IDRI-0042\n")) == "block"
    lidc = load_policy("lidc-demo", POLICIES)
    assert worst(check(tmp_path, lidc, ctx, "ANONYMOUS li 123 LIDC-IDRI-0042\n")) == "pass"


def test_base64_blob_in_log_is_flagged(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    blob = base64.b64encode(os.urandom(3000)).decode()
    results = check(tmp_path, policy, context, f"debug dump: {blob}\n")
    enc = only(results, "encoded_blob")
    assert enc.outcome == "flag"
    assert enc.evidence["runs"][0]["kind"] == "base64" and enc.evidence["runs"][0]["decoded_entropy"] > 7.5


def test_uid_and_email_patterns_flagged(tmp_path: Path, policy: Policy) -> None:
    results = check(
        tmp_path, policy, CheckContext(), "ref 1.2.840.113619.2.55.3.604688119\nmail jd@example.org\n"
    )
    assert only(results, "pattern:dicom_uid").outcome == "flag"
    assert only(results, "pattern:email").outcome == "flag"
