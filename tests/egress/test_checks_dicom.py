"""DICOM outputs against the PS3.15 Annex E Basic Profile, on pydicom's bundled CT_small.dcm."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid

from egress_review.checks import CheckContext, CheckResult, annex_e, gather_identifiers, run_checks, worst
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]

# What a de-identification pipeline keeps of a CT slice: geometry, acquisition physics and
# pixels. Chosen by hand (not from the checker's own table) so the test is independent of it.
KEEP = {
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SliceThickness",
    "KVP",
    "SpacingBetweenSlices",
    "ReconstructionDiameter",
    "GantryDetectorTilt",
    "ConvolutionKernel",
    "PatientPosition",
    "SeriesNumber",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceLocation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "PixelSpacing",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleIntercept",
    "RescaleSlope",
    "PixelData",
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


@pytest.fixture(scope="module")
def context() -> CheckContext:
    return CheckContext(identifiers=gather_identifiers(CT_SMALL), file_count=1, total_size=0)


def anonymised(src: Path = CT_SMALL) -> Dataset:
    """A de-identified copy: whitelist of technical attributes, new UIDs, empty Type 2 IDs."""
    original = pydicom.dcmread(src)
    ds = Dataset()
    for elem in original:
        if not elem.tag.is_private and elem.keyword in KEEP:
            ds.add(copy.deepcopy(elem))
    sop = generate_uid()
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "TRE test pipeline: whitelist, new UIDs"
    ds.BurnedInAnnotation = "NO"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = original.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = original.file_meta.TransferSyntaxUID
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def by_check(results: list[CheckResult], check: str) -> CheckResult:
    (found,) = [r for r in results if r.check == check]
    return found


def test_original_with_patient_name_is_blocked_naming_the_tag(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    results = run_checks(CT_SMALL, "slice.dcm", policy, context)
    assert worst(results) == "block"
    annex = by_check(results, "dicom:annex_e")
    assert annex.outcome == "block"
    keywords = {a["keyword"]: a for a in annex.evidence["attributes"]}
    assert keywords["StudyDate"]["tag"] == "(0008,0020)"
    assert keywords["InstitutionName"]["action"] == "X/Z/D"
    ids = by_check(results, "dicom:identifiers")
    assert "PatientName (0010,0010)" in ids.reason
    assert by_check(results, "dicom:private_tags").outcome == "block"
    assert by_check(results, "dicom:uids").outcome == "block"
    assert by_check(results, "dicom:identity_removed").outcome == "flag"
    # evidence never repeats the identifier itself
    assert "CompressedSamples" not in str([r.evidence for r in results])


def test_patient_name_alone_is_caught_without_source_identifiers(tmp_path: Path, policy: Policy) -> None:
    ds = anonymised()
    ds.PatientName = "Doe^Jane"
    path = save(ds, tmp_path / "out.dcm")
    results = run_checks(path, "out.dcm", policy, CheckContext())
    annex = by_check(results, "dicom:annex_e")
    assert annex.outcome == "block"
    assert "PatientName (0010,0010)" in annex.reason


def test_anonymised_copy_passes(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    path = save(anonymised(), tmp_path / "anon.dcm")
    results = run_checks(path, "anon.dcm", policy, context)
    assert worst(results) == "pass", [r for r in results if r.outcome != "pass"]


def test_phi_in_private_tag_is_blocked(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    ds = anonymised()
    block = ds.private_block(0x0011, "ACME Research", create=True)
    block.add_new(0x01, "LO", "CompressedSamples^CT1")
    path = save(ds, tmp_path / "private.dcm")
    results = run_checks(path, "private.dcm", policy, context)
    assert worst(results) == "block"
    private = by_check(results, "dicom:private_tags")
    assert private.outcome == "block"
    assert {a["tag"] for a in private.evidence["attributes"]} >= {"(0011,0010)", "(0011,1001)"}
    # the safe-private option turns the tag rule into a flag, but the identifier still blocks
    safe = Policy.model_validate(
        {"name": "safe", "version": "1", "dicom": {"retain": {"safe_private": True}}}
    )
    results = run_checks(path, "private.dcm", safe, context)
    assert by_check(results, "dicom:private_tags").outcome == "flag"
    assert worst(results) == "block"


def test_private_tag_without_known_identifier_still_blocks(tmp_path: Path, policy: Policy) -> None:
    ds = anonymised()
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x10, "OB", b"opaque vendor data")
    path = save(ds, tmp_path / "private.dcm")
    assert (
        by_check(run_checks(path, "private.dcm", policy, CheckContext()), "dicom:private_tags").outcome
        == "block"
    )


def test_burned_in_annotation_blocks_and_identity_flag(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    ds = anonymised()
    ds.BurnedInAnnotation = "YES"
    del ds.PatientIdentityRemoved
    path = save(ds, tmp_path / "burned.dcm")
    results = run_checks(path, "burned.dcm", policy, context)
    assert by_check(results, "dicom:burned_in").outcome == "block"
    assert by_check(results, "dicom:identity_removed").outcome == "flag"
    assert "(0028,0301)" in by_check(results, "dicom:burned_in").reason


def test_uids_kept_from_source_block_unknown_source_flags(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    ds = anonymised()
    ds.StudyInstanceUID = pydicom.dcmread(CT_SMALL).StudyInstanceUID
    path = save(ds, tmp_path / "uid.dcm")
    uids = by_check(run_checks(path, "uid.dcm", policy, context), "dicom:uids")
    assert uids.outcome == "block"
    assert uids.evidence["attributes"][0]["keyword"] == "StudyInstanceUID"
    fresh = save(anonymised(), tmp_path / "fresh.dcm")
    unknown = by_check(run_checks(fresh, "fresh.dcm", policy, CheckContext()), "dicom:uids")
    assert unknown.outcome == "flag"


def test_identifier_copied_into_kept_attribute_blocks(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    ds = anonymised()
    ds.ImageType = ["DERIVED", "SECONDARY", "1CT1"]  # the source PatientID, in an attribute the profile keeps
    path = save(ds, tmp_path / "copied.dcm")
    results = run_checks(path, "copied.dcm", policy, context)
    ids = by_check(results, "dicom:identifiers")
    assert ids.outcome == "block" and ids.evidence["attributes"][0]["keyword"] == "ImageType"


def test_nested_sequence_attributes_are_found(tmp_path: Path, policy: Policy) -> None:
    ds = anonymised()
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = generate_uid()
    item.PatientName = "Smith^John"
    ds.ReferencedImageSequence = [item]
    path = save(ds, tmp_path / "nested.dcm")
    annex = by_check(run_checks(path, "nested.dcm", policy, CheckContext()), "dicom:annex_e")
    paths = [a["path"] for a in annex.evidence["attributes"]]
    assert "ReferencedImageSequence[0].PatientName" in paths


def test_retain_options_and_pseudonyms(tmp_path: Path) -> None:
    ds = anonymised()
    ds.PatientSex = "F"
    ds.PatientAge = "061Y"
    ds.PatientID = "LIDC-IDRI-0042"
    ds.StudyDate = "20010101"
    path = save(ds, tmp_path / "kept.dcm")
    strict = Policy(name="strict", version="1")
    annex = by_check(run_checks(path, "kept.dcm", strict, CheckContext()), "dicom:annex_e")
    assert {a["keyword"] for a in annex.evidence["attributes"]} == {
        "PatientSex",
        "PatientAge",
        "PatientID",
        "StudyDate",
    }
    loose = Policy.model_validate(
        {
            "name": "loose",
            "version": "1",
            "dicom": {
                "retain": {"patient_characteristics": True, "longitudinal_temporal": True},
                "allowed_values": {"PatientID": r"LIDC-IDRI-\d{4}"},
                "unverifiable_uid": "allow",
            },
        }
    )
    assert worst(run_checks(path, "kept.dcm", loose, CheckContext())) == "pass"


def test_dual_personality_preamble_is_flagged(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    ds = anonymised()
    ds.preamble = b"II*\x00" + b"\x00" * 124  # a TIFF header in the preamble (CT_small.dcm has one)
    path = save(ds, tmp_path / "tiff.dcm")
    results = run_checks(path, "tiff.dcm", policy, context)
    assert by_check(results, "dicom:preamble").outcome == "flag"
    assert by_check(results, "file_type").evidence["detected"] == "dicom"


def test_annex_e_table_covers_the_basic_profile() -> None:
    rows = annex_e.all_rows()
    assert len(rows) >= 600
    keywords = {r.keyword: r for r in rows}
    for kw, action in {
        "PatientName": "Z",
        "PatientID": "Z/D",
        "PatientBirthDate": "Z",
        "AccessionNumber": "Z",
        "InstitutionName": "X/Z/D",
        "InstitutionAddress": "X",
        "ReferringPhysicianName": "Z",
        "PerformingPhysicianName": "X",
        "OperatorsName": "X/Z/D",
        "StudyDate": "Z",
        "SeriesDate": "X/D",
        "StudyInstanceUID": "U",
        "SOPInstanceUID": "U",
        "FrameOfReferenceUID": "U",
        "OtherPatientIDs": "X",
        "PatientAddress": "X",
        "StudyDescription": "X",
    }.items():
        assert keywords[kw].action == action, kw
    assert annex_e.lookup(0x50001234) is not None and annex_e.lookup(0x50001234).keyword == "CurveData"  # type: ignore[union-attr]
    assert annex_e.lookup(0x60203000).keyword == "OverlayData"  # type: ignore[union-attr]
    assert annex_e.lookup(0x00280010) is None  # Rows is kept


def test_malformed_dicom_blocks_instead_of_crashing(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    raw = CT_SMALL.read_bytes()
    rows = b"\x28\x00\x10\x00US\x02\x00"  # (0028,0010) Rows, US, length 2
    assert raw.count(rows) == 1
    at = raw.index(rows)
    corrupt = raw[:at] + b"\x28\x00\x10\x00US\x03\x00" + raw[at + 8 : at + 10] + b"\x00" + raw[at + 10 :]
    path = tmp_path / "corrupt.dcm"
    path.write_bytes(corrupt)  # a 3-byte US value: pydicom fails only when the value is read
    results = run_checks(path, "corrupt.dcm", policy, context)
    dicom = by_check(results, "dicom")
    assert dicom.outcome == "block" and "malformed" in dicom.reason
    # a dataset folder holding the corrupt file still yields the good file's identifiers
    good = tmp_path / "good.dcm"
    good.write_bytes(CT_SMALL.read_bytes())
    assert "1CT1" in gather_identifiers(tmp_path)
