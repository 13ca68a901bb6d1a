"""DICOM UIDs in a preprocessed cohort's structured outputs (manifest.json, JSON, CSV).

`tre preprocess` writes a manifest keyed by series UID (its sidecars, named by pseudonym,
hold no UID since issue 13's eighth round; research code may still write UIDs anywhere).
UIDs are identifiers: the dataset's own block (identifiers check), and any other UID is
flagged for the reviewers (`text.patterns.dicom_uid`). The pattern used to list roots
(1.2, 1.3.6.1, 2.25 with 3+ more components), so UIDs of Siemens (1.3.12), Philips (1.3.46),
HL7 (2.16.840) and UUID-derived 2.25.<integer> roots passed silently; it now matches a UID by
its syntax. Public UIDs of the standard (SOP classes, transfer syntaxes) still pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egress_review.checks import CheckContext, run_checks
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"

VENDOR_UIDS = [
    "1.3.12.2.1107.5.1.4.73397.30000018",  # Siemens
    "1.3.46.670589.11.38085.5.0.7128.2018",  # Philips
    "2.16.840.1.113669.632.20.121711.10000158860",  # an HL7 OID root
    "2.25.329800735698586629295641978511506172918",  # UUID-derived
    "1.2.840.113619.2.55.3.604688119.969.1268071029.320",  # GE (already caught)
]


@pytest.fixture
def policy() -> Policy:
    return load_policy("default", POLICIES)


def _outcomes(tmp_path: Path, policy: Policy, name: str, text: str) -> dict[str, str]:
    path = tmp_path / name
    path.write_text(text)
    return {r.check: r.outcome for r in run_checks(path, name, policy, CheckContext())}


@pytest.mark.parametrize("uid", VENDOR_UIDS)
def test_a_manifest_keyed_by_any_vendor_uid_is_flagged(tmp_path: Path, policy: Policy, uid: str) -> None:
    manifest = {"version": 1, "series": {uid: {"status": "ok", "outputs": [{"path": "a.nii.gz"}]}}}
    assert (
        _outcomes(tmp_path, policy, "manifest.json", json.dumps(manifest)).get("pattern:dicom_uid") == "flag"
    )
    sidecar = {"series_uid": uid, "spacing": [1, 1, 1]}
    assert _outcomes(tmp_path, policy, "series.json", json.dumps(sidecar)).get("pattern:dicom_uid") == "flag"
    table = f"series_uid,status\n{uid},ok\n"
    assert _outcomes(tmp_path, policy, "series.csv", table).get("pattern:dicom_uid") == "flag"


@pytest.mark.parametrize(
    "text",
    [
        "transfer syntax 1.2.840.10008.1.2.1 and CT Image Storage 1.2.840.10008.5.1.4.1.1.2\n",
        "host 10.0.0.1 and 192.168.1.20, numpy 1.26.4, date 1.2.2024\n",
        "pi 3.14159, version 2.1.0, ratio 0.5\n",
    ],
)
def test_public_uids_addresses_and_versions_are_not_uids(tmp_path: Path, policy: Policy, text: str) -> None:
    assert "pattern:dicom_uid" not in _outcomes(tmp_path, policy, "notes.txt", text)
