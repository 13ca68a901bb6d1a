"""Content-type, limits and hidden-payload checks on real files built in the test."""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from egress_review.checks import CheckContext, CheckResult, run_checks, worst
from egress_review.checks.containers import entropy, jpeg_structure, png_structure
from egress_review.checks.detect import detect
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


def ctx(**kw: object) -> CheckContext:
    return CheckContext(
        identifiers=set(), file_count=int(kw.get("file_count", 1)), total_size=int(kw.get("total_size", 0))
    )


def by_check(results: list[CheckResult], check: str) -> list[CheckResult]:
    return [r for r in results if r.check == check]


def png_bytes(size: int = 32, **save: object) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save)  # type: ignore[arg-type]
    return buf.getvalue()


def jpeg_bytes(**save: object) -> bytes:
    img = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (64, 1)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **save)  # type: ignore[arg-type]
    return buf.getvalue()


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("patients.csv", "id,name\n1,Jane Doe\n")
    return buf.getvalue()


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def insert_before_iend(png: bytes, chunk: bytes) -> bytes:
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk + png[iend:]


def test_clean_png_and_jpeg_pass(tmp_path: Path, policy: Policy) -> None:
    for name, data in (("plot.png", png_bytes()), ("photo.jpg", jpeg_bytes())):
        path = tmp_path / name
        path.write_bytes(data)
        results = run_checks(path, name, policy, ctx(total_size=len(data)))
        assert worst(results) == "pass", [r for r in results if r.outcome != "pass"]


def test_zip_renamed_to_png_is_blocked(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "figure.png"
    path.write_bytes(zip_bytes())
    results = run_checks(path, "figure.png", policy, ctx())
    assert worst(results) == "block"
    (ftype,) = by_check(results, "file_type")
    assert ftype.outcome == "block" and ftype.evidence["detected"] == "zip"
    (ext,) = by_check(results, "extension")
    assert ext.outcome == "flag" and ext.evidence == {"extension_type": "png", "detected": "zip"}


def test_png_with_zip_appended_is_blocked(tmp_path: Path, policy: Policy) -> None:
    png = png_bytes()
    path = tmp_path / "plot.png"
    path.write_bytes(png + zip_bytes())
    results = run_checks(path, "plot.png", policy, ctx())
    assert worst(results) == "block"
    (trailing,) = by_check(results, "trailing_data")
    assert trailing.outcome == "block" and trailing.evidence["offset"] == len(png)
    (embedded,) = by_check(results, "embedded_container")
    assert embedded.outcome == "block"
    assert {"format": "zip", "offset": len(png), "region": "trailing data"} in embedded.evidence["signatures"]
    # still a valid PNG to any viewer: the structure walk ends at IEND
    assert png_structure(path.read_bytes()).end == len(png)


def test_zip_hidden_in_a_private_png_chunk_is_blocked(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "plot.png"
    path.write_bytes(insert_before_iend(png_bytes(), png_chunk(b"zzZp", zip_bytes())))
    results = run_checks(path, "plot.png", policy, ctx())
    assert worst(results) == "block"
    (embedded,) = by_check(results, "embedded_container")
    assert embedded.evidence["signatures"][0]["format"] == "zip"
    (unusual,) = by_check(results, "unknown_chunks")
    assert unusual.outcome == "flag" and unusual.evidence["parts"] == ["zzZp"]
    assert by_check(results, "trailing_data") == []


def test_random_payload_in_png_chunk_is_flagged_high_entropy(tmp_path: Path, policy: Policy) -> None:
    blob = os.urandom(4096)
    path = tmp_path / "plot.png"
    path.write_bytes(insert_before_iend(png_bytes(), png_chunk(b"prVt", blob)))
    results = run_checks(path, "plot.png", policy, ctx())
    (high,) = by_check(results, "high_entropy")
    assert high.outcome == "flag" and high.evidence["bytes"] == 4096 and high.evidence["entropy"] > 7.9
    # a compressed ICC profile is high-entropy by design and is not reported
    icc = tmp_path / "icc.png"
    icc.write_bytes(
        insert_before_iend(png_bytes(), png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(blob)))
    )
    assert by_check(run_checks(icc, "icc.png", policy, ctx()), "high_entropy") == []
    # the same bytes as text-like low-entropy data are not high entropy
    assert entropy(b"abcd" * 1024) == pytest.approx(2.0)


def test_jpeg_with_data_after_eoi_is_blocked(tmp_path: Path, policy: Policy) -> None:
    jpg = jpeg_bytes()
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpg + b"SECRET" * 100 + zip_bytes())
    results = run_checks(path, "photo.jpg", policy, ctx())
    assert worst(results) == "block"
    (trailing,) = by_check(results, "trailing_data")
    assert trailing.evidence["offset"] == len(jpg)
    assert jpeg_structure(jpg).ok and jpeg_structure(jpg).end == len(jpg)


def test_truncated_png_is_blocked(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "plot.png"
    path.write_bytes(png_bytes()[:-30])
    results = run_checks(path, "plot.png", policy, ctx())
    assert worst(results) == "block"
    assert by_check(results, "structure")[0].outcome == "block"


def test_csv_renamed_png_is_flagged_and_still_checked_as_table(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "plot.png"
    path.write_text("site,n\nA,3\nB,40\n")
    results = run_checks(path, "plot.png", policy, ctx())
    assert by_check(results, "extension")[0].outcome == "flag"
    assert by_check(results, "sdc:threshold")[0].outcome == "block"


def test_unknown_binary_is_blocked_with_entropy(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(8192))
    results = run_checks(path, "weights.bin", policy, ctx())
    assert worst(results) == "block"
    assert by_check(results, "file_type")[0].evidence["detected"] == "binary"
    assert by_check(results, "high_entropy")[0].outcome == "flag"


def test_archives_and_executables_are_blocked(tmp_path: Path, policy: Policy) -> None:
    cases = {
        "data.csv.gz": gzip.compress(b"a,b\n1,2\n"),
        "data.7z": b"7z\xbc\xaf\x27\x1c" + os.urandom(64),
        "tool": b"\x7fELF\x02\x01\x01" + bytes(100),
    }
    expected = {"data.csv.gz": "gzip", "data.7z": "7z", "tool": "executable"}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        results = run_checks(path, name, policy, ctx())
        assert worst(results) == "block", name
        assert by_check(results, "file_type")[0].evidence["detected"] == expected[name]


def test_pdf_polyglot_signature_inside_text_is_blocked(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("results below\n%PDF-1.7\n1 0 obj << >> endobj\n")
    results = run_checks(path, "notes.txt", policy, ctx())
    assert by_check(results, "embedded_container")[0].evidence["signatures"][0]["format"] == "pdf"


def test_binary_after_a_megabyte_of_text_is_blocked(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "train.log"
    path.write_bytes(b"epoch 1 loss 0.5\n" * 70_000 + os.urandom(4096))  # text sample is the first 1 MiB
    results = run_checks(path, "train.log", policy, ctx())
    assert by_check(results, "file_type")[0].evidence["detected"] == "text"
    assert by_check(results, "text_decode")[0].outcome == "block"


def test_size_and_count_limits(tmp_path: Path) -> None:
    policy = Policy.model_validate(
        {
            "name": "small",
            "version": "1",
            "files": {"max_file_bytes": 100, "max_files": 2, "max_total_bytes": 1000},
        }
    )
    path = tmp_path / "big.txt"
    path.write_text("x" * 101)
    results = run_checks(path, "big.txt", policy, ctx())
    assert [r.check for r in results] == ["limits"] and results[0].outcome == "block"
    small = tmp_path / "ok.txt"
    small.write_text("fine\n")
    assert worst(run_checks(small, "ok.txt", policy, ctx(file_count=2, total_size=5))) == "pass"
    too_many = run_checks(small, "ok.txt", policy, ctx(file_count=3, total_size=5))
    assert by_check(too_many, "limits")[0].outcome == "block"
    assert "3 files" in by_check(too_many, "limits")[0].reason
    too_big = run_checks(small, "ok.txt", policy, ctx(file_count=1, total_size=5000))
    assert by_check(too_big, "limits")[0].outcome == "block"


def test_policy_can_downgrade_archives_to_flag(tmp_path: Path) -> None:
    # the members are checked too (round 4), so the policy must allow what the zip holds
    policy = Policy.model_validate(
        {"name": "zips", "version": "1", "files": {"allowed_types": ["zip", "csv"], "archives": "flag"}}
    )
    path = tmp_path / "bundle.zip"
    path.write_bytes(zip_bytes())
    results = run_checks(path, "bundle.zip", policy, ctx())
    assert worst(results) == "flag"


def test_detection_ignores_extension(tmp_path: Path) -> None:
    def detect_bytes(data: bytes, name: str) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return detect(path).type

    assert detect_bytes(png_bytes(), "x.csv") == "png"
    assert detect_bytes(b'{"a": [1, 2]}', "x.txt") == "json"
    assert detect_bytes(b"a\tb\n1\t2\n", "y.txt") == "tsv"
    assert detect_bytes(b"just a log line\n", "x.png") == "text"
    assert detect_bytes(b"\x00\x01\x02" * 100, "z.txt") == "binary"


def test_worst_orders_outcomes_and_fails_closed() -> None:
    def r(o: str) -> CheckResult:
        return CheckResult(check="x", outcome=o, reason="")  # type: ignore[arg-type]

    assert worst([]) == "pass"
    assert worst([r("pass"), r("flag")]) == "flag"
    assert worst([r("flag"), r("block"), r("pass")]) == "block"
    assert worst(["pass", "bogus"]) == "block"


@pytest.mark.parametrize(
    "name,content",
    [
        ("dice.csv", "dice\n0.91\n0.87\n0.93\n"),
        ("cases.csv", "# per case, pseudonymised\ncase\nSUBJ-0001\nSUBJ-0002\n"),
        ("auc.tsv", "auc\n0.81\n0.79\n"),
    ],
)
def test_a_one_column_table_named_csv_is_not_a_mislabelled_file(
    tmp_path: Path, policy: Policy, name: str, content: str
) -> None:
    # newcomer9: `count` / `2` got "extension says 'csv' but the content is UTF-8 text"
    path = tmp_path / name
    path.write_text(content)
    assert detect(path).one_column
    results = run_checks(path, name, policy, ctx())
    assert by_check(results, "extension") == [] and worst(results) == "pass"


def test_a_one_column_table_still_gets_the_count_rules(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "count.csv"
    path.write_text("patients\n2\n")
    results = run_checks(path, "count.csv", policy, ctx())
    assert by_check(results, "extension") == []
    assert by_check(results, "sdc:threshold")[0].outcome == "block"


@pytest.mark.parametrize(
    "content",
    [
        "results by site\nsite A had 3 patients\nsite B had 40\n",
        "a note\nthe, second line\n",
        "x\n" + "y" * 200 + "\n",
    ],
)
def test_prose_named_csv_is_still_flagged(tmp_path: Path, policy: Policy, content: str) -> None:
    path = tmp_path / "counts.csv"
    path.write_text(content)
    assert not detect(path).one_column
    assert by_check(run_checks(path, "counts.csv", policy, ctx()), "extension")[0].outcome == "flag"
