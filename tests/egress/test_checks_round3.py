"""Unit tests of the classes the round-3 planted variants exposed, and of their false-alarm guards."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from egress_review.checks import CheckContext, gather_identifiers, run_checks, worst
from egress_review.checks.dates import find_dates
from egress_review.checks.detect import detect
from egress_review.checks.encoded import find_encoded
from egress_review.checks.identifiers import matcher_for
from egress_review.checks.images import exif_text
from egress_review.checks.runner import decompressed
from egress_review.checks.table_readers import json_tables, parse_json
from egress_review.checks.text_tables import html_tables, markdown_tables
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
PAYLOAD = bytes(range(256)) * 8  # 2 KiB of every byte value


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


@pytest.mark.parametrize(
    ("encoded", "kind"),
    [
        (base64.b32encode(PAYLOAD), "base32"),
        (base64.urlsafe_b64encode(PAYLOAD), "base64 (URL-safe)"),
        (base64.b85encode(PAYLOAD), "base85"),
        (base64.a85encode(PAYLOAD, wrapcol=76), "base85"),
        (base64.a85encode(PAYLOAD, adobe=True), "base85"),
    ],
)
def test_other_base_encodings_are_decoded(encoded: bytes, kind: str) -> None:
    (blob,) = find_encoded("log start\n" + encoded.decode() + "\nlog end\n", 512)
    assert blob.data == PAYLOAD and blob.kind.startswith(kind) and blob.line == 2


def test_number_rows_and_rules_are_not_encodings() -> None:
    rng = np.random.default_rng(0)
    csv_rows = "\n".join(",".join(f"{v:.6f}" for v in row) for row in rng.normal(size=(20, 80)))
    rules = "\n".join(["-" * 600, "=" * 600, "_" * 600, "-" * 600])
    path = "/".join(f"folder_{i}" for i in range(80))
    assert find_encoded(csv_rows + "\n" + rules + "\n" + path + "\n", 512) == []


def test_compressed_payloads_are_inflated_within_a_bound() -> None:
    assert decompressed(gzip.compress(PAYLOAD), 1 << 20) == (PAYLOAD, "gzip")
    bomb = gzip.compress(b"\x00" * (8 << 20))
    inner, kind = decompressed(bomb, 1 << 20)
    assert kind == "gzip" and len(inner) == 1 << 20
    assert decompressed(PAYLOAD, 1 << 20) == (PAYLOAD, "")


def test_identifiers_joined_with_other_separators(policy: Policy) -> None:
    matcher = matcher_for(policy, {"MRN-0048213", "HOSP-77-1234"})
    # round 4: the long digit part alone ("0048213") is the record number without its label
    for text in ("MRN 0048213", "mrn_0048213", "MRN0048213", "hosp/77/1234", "HOSP771234", "0048213"):
        assert matcher.find(f"joined on {text} today"), text
    # short parts stay everyday numbers
    for text in ("MRN-0048214", "HOSP-77-12345", "1234", "77"):
        assert not matcher.find(f"joined on {text} today"), text


def test_ucs2_exif_text_in_either_byte_order() -> None:
    for order in ("utf-16-le", "utf-16-be"):
        assert exif_text(b"UNICODE\x00" + "HOSP-77-1234".encode(order), 0x9286) == "HOSP-77-1234"
    assert exif_text(tuple("Jane Doe".encode("utf-16-le") + b"\x00\x00"), 0x9C9C) == "Jane Doe"


def test_json_lines_and_named_mappings_are_tables(tmp_path: Path, policy: Policy) -> None:
    lines = "".join(json.dumps({"site": s, "n": n}) + "\n" for s, n in [("A", 40), ("B", 2), ("C", 51)])
    assert parse_json(lines) == [{"site": "A", "n": 40}, {"site": "B", "n": 2}, {"site": "C", "n": 51}]
    (tmp_path / "c.jsonl").write_text(lines)
    assert detect(tmp_path / "c.jsonl").detail.startswith("JSON Lines")
    results = run_checks(tmp_path / "c.jsonl", "c.jsonl", policy, CheckContext())
    assert worst(results) == "block" and any(r.check == "sdc:threshold" for r in results)
    tables = list(json_tables({"n_by_site": {"A": 45, "B": 3}}))
    assert tables == [("$.n_by_site", [["label", "n_by_site"], ["A", "45"], ["B", "3"]])]
    # metrics at the top level stay one row of named values, not counts
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"dice": 0.83, "folds": 5, "epochs": 3}))
    assert worst(run_checks(metrics, "metrics.json", policy, CheckContext())) == "pass"


def test_a_bare_matrix_is_record_level_a_labelled_table_is_not(tmp_path: Path, policy: Policy) -> None:
    rng = np.random.default_rng(1)
    matrix = tmp_path / "w.csv"
    np.savetxt(matrix, rng.normal(size=(40, 40)), fmt="%.5f", delimiter=",")
    (found,) = [
        r for r in run_checks(matrix, "w.csv", policy, CheckContext()) if r.check == "sdc:record_level"
    ]
    assert "40 x 40 matrix of numbers with no label column" in found.reason
    labelled = tmp_path / "features.csv"
    rows = ["site,n," + ",".join(f"f{i}" for i in range(40))]
    rows += [f"site{r},{40 + r}," + ",".join(f"{v:.4f}" for v in rng.normal(size=40)) for r in range(40)]
    labelled.write_text("\n".join(rows) + "\n")
    fired = [
        r.check for r in run_checks(labelled, "features.csv", policy, CheckContext()) if r.outcome != "pass"
    ]
    assert "sdc:record_level" not in fired


@pytest.mark.parametrize(
    "written",
    ["15.3.1962", "3/15/1962", "1962-3-15", "15/03/62", "15th of March, 1962", "March 15th 1962",
     "15 mars 1962", "15. März 1962", "15MAR1962", "15-mar-62", "15031962", "1962.03.15"],
)  # fmt: skip
def test_a_birth_date_is_found_however_it_is_written(written: str) -> None:
    assert list(find_dates(f"seen: {written}.", {"19620315"})), written


@pytest.mark.parametrize(
    "other", ["16.3.1962", "3/15/1963", "2962-03-15", "15 May 1962", "1.15.62", "x15MAR19621"]
)
def test_other_dates_and_numbers_are_not_the_birth_date(other: str) -> None:
    assert not list(find_dates(f"seen: {other}.", {"19620315"})), other


def test_text_tables_are_read() -> None:
    md = "intro\n\n| site | n |\n| :--- | ---: |\n| A | 40 |\n| B | 3 |\n\nafter | not a table\n"
    assert markdown_tables(md) == [(3, [["site", "n"], ["A", "40"], ["B", "3"]])]
    html = "<table><tr><th>site</th><th>n</th></tr><tr><td>A</td><td> 4 0 </td></tr></table><p>x</p>"
    assert html_tables(html) == [[["site", "n"], ["A", "4 0"]]]
    assert html_tables("<p>no table</p>") == [] and markdown_tables("a | b\nc | d\n") == []


def test_sidecar_workbooks_and_parquet_are_identifier_sources(tmp_path: Path, policy: Policy) -> None:
    from tests.egress.planted_corpus import _parquet, _xlsx

    (tmp_path / "pathology.xlsx").write_bytes(_xlsx([["Patient ID", "grade"], ["PA-2019-55731", "G2"]]))
    (tmp_path / "labs.parquet").write_bytes(_parquet({"mrn": ["MRN-0099887"], "hb": [12.5]}))
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not a workbook")
    found = gather_identifiers(tmp_path, identifier_columns=policy.text.identifier_columns)
    assert {"PA-2019-55731", "MRN-0099887"} <= found and "G2" not in found
