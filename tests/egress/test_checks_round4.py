"""Round 4 of the planted-leak run (redteam8): every leak is caught by its class's check, and
the controls raise none of the new checks. OCR is off: no leak here needs it, and it is slow."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
import zipfile
from pathlib import Path

import pytest

from egress_review.checks import CheckContext, worst
from tests.egress.planted_corpus import (
    PATIENT_ID,
    Planted,
    build_dataset,
    check_context,
    default_policy_without_ocr,
    run_planted,
)
from tests.egress.planted_round4 import controls, leaks
from tre.policy import Policy

NEW_CHECKS = (
    "identifiers:disguised",
    "identifiers:parts",
    "image:similar_to_input",
    "model:similar_to_input",
    "model:identifiers",
    "table_binary",
    "sdc:image_table",
    "image_metadata_identifiers",
    "dicom:pixel_bytes",
    "dicom:similar_to_input",
    "decoded:raw:similar_to_input",
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return default_policy_without_ocr()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def context(dataset: Path, policy: Policy) -> CheckContext:
    return check_context(dataset, policy)


def test_every_round4_leak_is_caught_by_its_class(
    tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext
) -> None:
    missed, wrong = [], []
    for planted in leaks(dataset):
        results = run_planted(tmp_path, planted, policy, context)
        fired = [r.check for r in results if r.outcome != "pass"]
        if worst(results) == "pass":
            missed.append(planted.name)
        elif not any(f.startswith(planted.caught_by) for f in fired):
            wrong.append(f"{planted.name}: expected {planted.caught_by}, got {fired}")
    assert not missed, f"leaks that passed: {missed}"
    assert not wrong, "\n".join(wrong)


def test_identifier_leaks_block(tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext) -> None:
    """An identifier found is a block under the default policy, not a flag for the reviewers."""
    for planted in leaks(dataset):
        if any("identifiers" in c for c in planted.caught_by):
            assert worst(run_planted(tmp_path, planted, policy, context)) == "block", planted.name


def test_controls_raise_none_of_the_new_checks(tmp_path: Path, policy: Policy, context: CheckContext) -> None:
    for planted in controls():
        fired = [r.check for r in run_planted(tmp_path, planted, policy, context) if r.outcome != "pass"]
        assert not [f for f in fired if f.startswith(NEW_CHECKS)], f"{planted.name}: {fired}"


def test_disguised_reason_is_fixed_words(
    tmp_path: Path, dataset: Path, policy: Policy, context: CheckContext
) -> None:
    """The requester sees which lines, never the decoded text."""
    planted = next(p for p in leaks(dataset) if p.name == "rot13.txt")
    hit = next(
        r for r in run_planted(tmp_path, planted, policy, context) if r.check == "identifiers:disguised"
    )
    assert "HOSP" not in hit.reason.upper() and "UBFC" not in hit.reason.upper()
    assert hit.evidence == {"lines": [1], "count": 1}


# ---------------------------------------------------------------------- archives a policy allows


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def archive_policy(policy: Policy) -> Policy:
    """A policy that lets archives leave: their members must be checked all the same."""
    allowed = [*policy.files.allowed_types, "zip", "tar", "gzip", "bzip2", "xz", "7z"]
    files = policy.files.model_copy(update={"allowed_types": allowed, "archives": "allow"})
    return policy.model_copy(update={"files": files})


REPORT = f"patient {PATIENT_ID}\n".encode()


@pytest.mark.parametrize(
    ("name", "data", "check"),
    [
        ("report.zip", _zip({"r.txt": REPORT}), "member:identifiers"),
        (
            "nested.tar.gz",
            _tgz({"m.zip": _zip({"i.zip": _zip({"r.txt": REPORT})})}),
            "member:member:member:identifiers",
        ),
        ("report.txt.gz", gzip.compress(REPORT), "member:identifiers"),
        ("report.txt.xz", lzma.compress(REPORT), "member:identifiers"),
        (
            "deep.zip",
            _zip({"a.zip": _zip({"b.zip": _zip({"c.zip": _zip({"r.txt": REPORT})})})}),
            "member:member:member:archive_members",
        ),
        ("many.zip", _zip({f"f{i}.txt": b"x" for i in range(1001)}), "archive_members"),
        ("bomb.zip", _zip({"zeros.txt": b"0" * (51 * 1024 * 1024)}), "archive_members"),
        (
            "lying.zip",
            _zip({"ok.txt": b"fine\n", "r.txt": REPORT}).replace(b"r.txt", b"s.txt", 1),
            "archive_members",
        ),
        ("opaque.7z", b"7z\xbc\xaf\x27\x1c" + bytes(40), "archive_members"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v and len(v) < 20 else "",
)
def test_an_allowed_archive_is_judged_by_its_members(
    tmp_path: Path, archive_policy: Policy, context: CheckContext, name: str, data: bytes, check: str
) -> None:
    results = run_planted(tmp_path, Planted(name, data), archive_policy, context)
    assert worst(results) == "block"
    assert check in [r.check for r in results if r.outcome == "block"], [(r.check, r.reason) for r in results]
    for r in results:  # a member is named by position; its name is for the reviewers only
        if r.check.startswith("member:"):
            assert "r.txt" not in r.reason and r.evidence["reviewer_only"]["member_name"]


def test_a_clean_allowed_archive_passes(
    tmp_path: Path, archive_policy: Policy, context: CheckContext
) -> None:
    results = run_planted(
        tmp_path, Planted("ok.zip", _zip({"readme.txt": b"fine results\n"})), archive_policy, context
    )
    assert worst(results) == "pass"
    assert any(r.check == "archive_members" and r.evidence == {"members": 1} for r in results)


def test_text_past_the_disguise_bound_is_flagged_not_passed(
    tmp_path: Path, policy: Policy, context: CheckContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound the rest is searched plainly only: the file is flagged, and a disguised
    name before the bound is still found."""
    from egress_review.checks import text

    monkeypatch.setattr(text, "MAX_DISGUISED_CHARS", 2000)
    prose = "".join(f"step {i} finished without trouble\n" for i in range(200)).encode()
    results = run_planted(tmp_path, Planted("long.txt", prose), policy, context)
    assert [(r.check, r.outcome) for r in results if r.outcome != "pass"] == [
        ("identifiers:disguised", "flag")
    ]
    hidden = b"patient E N A J ^ E O D\n" + prose
    results = run_planted(tmp_path, Planted("long2.txt", hidden), policy, context)
    assert worst(results) == "block"


@pytest.mark.parametrize(
    ("kind", "data"),
    [("binary", bytes(range(256)) * 4 + REPORT)],
    ids=["binary"],
)
def test_an_allowed_type_no_check_reads_is_flagged(
    tmp_path: Path, policy: Policy, context: CheckContext, kind: str, data: bytes
) -> None:
    files = policy.files.model_copy(update={"allowed_types": [*policy.files.allowed_types, kind]})
    results = run_planted(
        tmp_path, Planted(f"out.{kind}", data), policy.model_copy(update={"files": files}), context
    )
    assert "content_uninspected" in [r.check for r in results if r.outcome == "flag"]


def test_an_allowed_pdf_is_read_and_a_broken_one_blocked(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    """Since leaks13 a PDF a policy allows is read (checks/pdf.py), not flagged unread: one
    with no catalog or cross-reference table cannot be read, so it blocks."""
    files = policy.files.model_copy(update={"allowed_types": [*policy.files.allowed_types, "pdf"]})
    data = b"%PDF-1.4\n1 0 obj<<>>endobj\n" + REPORT + b"%%EOF\n"
    results = run_planted(
        tmp_path, Planted("out.pdf", data), policy.model_copy(update={"files": files}), context
    )
    assert any(r.check == "pdf" and r.outcome == "block" for r in results), results
    assert "content_uninspected" not in [r.check for r in results]
