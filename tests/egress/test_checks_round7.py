"""Round 7 of the planted-leak run (leaks11): every leak is caught by its class's check, the
benign research outputs of the same shapes raise no false alarm, the known limits are still
what the docs say, a small cell whose total is in another file of the request is recovered,
and the same files through the real egress API are blocked. OCR is off: no leak here needs
it (the figure whose pixels show a count is a known limit)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from egress_review import checking
from egress_review.checks import CheckContext, run_checks, worst
from egress_review.checks.dates import find_numeric_dates
from egress_review.checks.derived_counts import derived_counts
from egress_review.checks.tables import classify
from egress_review.checks.text_tables import (
    asciidoc_tables,
    framed_tables,
    html_tables,
    latex_tables,
    risk_tables,
    rst_list_tables,
    rst_simple_tables,
)
from tests.egress.planted_corpus import (
    Planted,
    build_dataset,
    check_context,
    default_policy_without_ocr,
    run_planted,
)
from tests.egress.planted_round7 import (
    BIRTH_EPOCH,
    BIRTH_SERIAL,
    IDS,
    PROSE,
    benign,
    benign_requests,
    known_limits,
    leaks,
    request_leaks,
)
from tests.worlds import WorldFactory
from tre.policy import Policy, load_policy
from tre.store.db import session_scope

POLICIES = Path(__file__).resolve().parents[2] / "policies"
LEAKS = {p.name: p for p in leaks()}
BENIGN = {p.name: (p, by_design) for p, by_design in benign()}
LIMITS = {p.name: p for p in known_limits()}
REQUESTS = {name: (files, caught_by) for name, files, caught_by in request_leaks()}
BENIGN_REQUESTS = dict(benign_requests())


@pytest.fixture(scope="module")
def policy() -> Policy:
    return default_policy_without_ocr()


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> CheckContext:
    return check_context(build_dataset(tmp_path_factory.mktemp("dataset")), policy)


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_round7_leak_is_caught_by_its_class(
    name: str, tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    planted = LEAKS[name]
    results = run_planted(tmp_path, planted, policy, context)
    fired = [r.check for r in results if r.outcome != "pass"]
    assert any(f.startswith(planted.caught_by) for f in fired), (
        f"{name}: expected {planted.caught_by}, got {fired}"
    )
    if planted.caught_by != PROSE:
        # a count in a table or a named value, an identifier: blocked, not only flagged
        assert worst(results) == "block", f"{name}: {fired}"
    else:
        assert worst(results) != "pass", f"{name}: {fired}"


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_round7_benign_output_raises_no_false_alarm(
    name: str, tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    planted, by_design = BENIGN[name]
    fired = [r.check for r in run_planted(tmp_path, planted, policy, context) if r.outcome != "pass"]
    assert [f for f in fired if f not in by_design] == [], f"{name}: {fired}"
    assert not by_design or fired, f"{name}: expected {by_design}"


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_round7_known_limits_are_as_documented(
    name: str, tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    """docs/egress-checks.md lists these as still passing (or flagged only for something
    else). If one is caught one day, this fails: move it to `leaks()` and update the docs."""
    planted = LIMITS[name]
    fired = [r.check for r in run_planted(tmp_path, planted, policy, context) if r.outcome != "pass"]
    assert not any(f.startswith(planted.caught_by) for f in fired), f"{name} is caught now: {fired}"


def _request(
    tmp_path: Path, files: list[Planted], context: CheckContext
) -> tuple[dict[str, Path], CheckContext]:
    paths: dict[str, Path] = {}
    for planted in files:
        paths[planted.name] = tmp_path / planted.name
        paths[planted.name].write_bytes(planted.data)
    return paths, dataclasses.replace(context, request_paths=paths, file_count=len(files))


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_a_total_in_another_file_of_the_request_gives_the_cell_back(
    name: str, tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    files, caught_by = REQUESTS[name]
    paths, ctx = _request(tmp_path, files, context)
    table_file = files[0].name
    results = run_checks(paths[table_file], table_file, policy, ctx)
    found = [r for r in results if r.check in caught_by and r.outcome == "block"]
    assert found, [(r.check, r.outcome) for r in results]
    assert found[0].evidence["across_files"] is True
    # alone, the same table is safe: its cell is suppressed and nothing gives it back
    alone = run_checks(paths[table_file], table_file, policy, context)
    assert not [r for r in alone if r.check in caught_by], [r.check for r in alone]


@pytest.mark.parametrize("name", sorted(BENIGN_REQUESTS))
def test_totals_across_files_that_reveal_nothing_raise_nothing(
    name: str, tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    paths, ctx = _request(tmp_path, BENIGN_REQUESTS[name], context)
    for file_name, path in paths.items():
        fired = [r.check for r in run_checks(path, file_name, policy, ctx) if r.outcome != "pass"]
        assert fired == [], (file_name, fired)


def test_corpus_sizes() -> None:
    """The counts docs/egress-checks.md states."""
    assert len(LEAKS) == 44 and len(REQUESTS) == 2 and len(LIMITS) == 1
    assert len(BENIGN) == 31 and len(BENIGN_REQUESTS) == 2
    assert sum(1 for p in LEAKS.values() if p.caught_by == IDS) == 7


# ---------------------------------------------------------------------- the readers, one by one


def test_html_spans_are_laid_out_as_a_browser_does() -> None:
    html = (
        "<table><tr><th rowspan=2>site</th><th colspan=2>n</th></tr><tr><th>male</th><th>female</th></tr>"
        "<tr><td rowspan=2>A</td><td>40</td><td>38</td></tr><tr><td>35</td><td>3</td></tr>"
        "<tr><td>B</td><td colspan='x'>7</td><td rowspan=999999>1</td></tr></table>"
    )
    (grid,) = html_tables(html)
    assert grid[0] == ["site", "male n", "female n"]
    assert grid[1:3] == [["A", "40", "38"], ["A", "35", "3"]]
    assert grid[3] == ["B", "7", "1"]  # a nonsense colspan is one column; a huge rowspan is bounded


def test_latex_multicolumn_header_names_the_columns_under_it() -> None:
    tex = (
        "\\begin{tabular*}{\\textwidth}{lrr}\n & \\multicolumn{2}{c}{\\textbf{Deaths}} \\\\\n"
        "Site & 2019 & 2020 \\\\\n\\midrule\nA & 40 & 3 \\\\\n\\end{tabular*}\n"
    )
    (rows,) = latex_tables(tex)
    assert rows[0] == ["Site", "2019 Deaths", "2020 Deaths"] and rows[1] == ["A", "40", "3"]
    table = classify(rows, load_policy("default", POLICIES).sdc)
    assert table.counts == [1, 2]


@pytest.mark.parametrize(
    ("reader", "text", "rows"),
    [
        (framed_tables, "| a | n |\n| x | 3 |\n", [["a", "n"], ["x", "3"]]),
        (framed_tables, "+---+---+\n| a | n |\n+===+===+\n| x | 3 |\n+---+---+\n", [["a", "n"], ["x", "3"]]),
        (framed_tables, "| a | n |\n|---|---|\n| x | 3 |\n", None),  # Markdown: markdown_tables reads it
        (framed_tables, "| only one row |\n", None),
        (
            rst_simple_tables,
            "===  ===\na    n\n===  ===\nx    3\ny    45\n===  ===\n",
            [["a", "n"], ["x", "3"], ["y", "45"]],
        ),
        (
            rst_list_tables,
            ".. list-table::\n\n   * - a\n     - n\n   * - x\n     - 3\n",
            [["a", "n"], ["x", "3"]],
        ),
        (asciidoc_tables, "|===\n|a |n\n|x |3\n|===\n", [["a", "n"], ["x", "3"]]),
        (asciidoc_tables, "|===\n|a\n|n\n\n|x\n|3\n|===\n", [["a", "n"], ["x", "3"]]),
        (
            risk_tables,
            "No. at risk\nArm A  120 88 4\nMonths 0 12 24\n",
            [["group", "at_risk 1", "at_risk 2", "at_risk 3"], ["Arm A", "120", "88", "4"]],
        ),
        (risk_tables, "patients at risk of relapse were 120\n", None),
    ],
)
def test_text_table_readers(reader: object, text: str, rows: list[list[str]] | None) -> None:
    found = reader(text)  # type: ignore[operator]
    if rows is None:
        assert found == []
    else:
        assert found and found[0][1] == rows


@pytest.mark.parametrize(
    ("rows", "recovered"),
    [
        # row B's male cell follows from its column, then its female cell from its row
        (
            [
                ["site", "male", "female", "total"],
                ["A", "40", "*", "45"],
                ["B", "*", "*", "41"],
                ["Total", "75", "11", "86"],
            ],
            2,
        ),
        # two hidden cells of a column that add up to 7: together under the threshold
        ([["site", "n"], ["A", "45"], ["B", "<10"], ["C", "<10"], ["Total", "52"]], 1),
        # four hidden cells, two in each line: one degree of freedom, no line under the threshold
        (
            [
                ["site", "m", "f", "total"],
                ["A", "40", "38", "78"],
                ["B", "*", "*", "30"],
                ["C", "*", "*", "31"],
                ["Total", "71", "68", "139"],
            ],
            0,
        ),
    ],
)
def test_differencing_solves_the_margins_together(rows: list[list[str]], recovered: int) -> None:
    rules = load_policy("default", POLICIES).sdc
    found = [r for r in derived_counts(classify(rows, rules), rules) if r.check == "sdc:differencing"]
    assert (len(found[0].evidence["cells"]) if found else 0) == recovered


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        (f"dob,{BIRTH_EPOCH}\n", True),
        (f"t={BIRTH_EPOCH + 86_399}\n", True),  # any second of the day
        (f"t={BIRTH_EPOCH - 1}\n", False),  # the day before
        (f"t_ms={BIRTH_EPOCH * 1000 + 5}\n", True),
        (f"born (excel) {BIRTH_SERIAL}\n", True),
        (f"case,dob\nc1,{BIRTH_SERIAL}.0\n", True),
        (f"case,voxels,scan_date\nc1,{BIRTH_SERIAL},2026-01-05\n", False),  # not the date column
        (f"{BIRTH_SERIAL} voxels\n", False),  # no date word: a serial day is only one where it says so
        (f"matlab datenum {BIRTH_SERIAL + 693_960}\n", True),
    ],
)
def test_dates_as_numbers(text: str, hit: bool) -> None:
    assert bool(list(find_numeric_dates(text, {"19620315"}))) is hit


def test_footnotes_and_separators_are_read_as_numbers() -> None:
    rules = load_policy("default", POLICIES).sdc
    table = classify([["site", "n", "stage"], ["A", "3*", "3a"], ["B", "1,234", "2b"]], rules)
    assert table.rows == [["A", "3", "3a"], ["B", "1234", "2b"]]  # letters only in a count column


def test_round7_files_through_the_egress_api(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    """The real request path: a finished job's outputs, an egress request by the researcher,
    the checks the server runs. Each leak is blocked, the two files whose total gives a cell
    back included, and the requester's view does not quote what the job wrote."""
    names = ["table_grid.rst", "rowspan.html", "footnote_star.csv", "confusion_small.csv", "relapsed_kv.txt"]
    outputs = {n: LEAKS[n].data for n in names}
    pair, _ = REQUESTS["total_in_other_csv"]
    outputs |= {p.name: p.data for p in pair}
    with session_scope(engine) as s:
        job_id = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], outputs)
    body = {"job_id": job_id, "files": sorted(outputs), "justification": "round 7"}
    made = app_client.post("/api/v1/egress/requests", headers=world.headers["alice"], json=body)
    assert made.status_code == 201, made.text
    seen = app_client.get(f"/api/v1/egress/requests/{made.json()['id']}", headers=world.headers["alice"])
    assert seen.status_code == 200, seen.text
    files = {f["path"]: f for f in seen.json()["files"]}
    for name in [*names, "by_site.csv"]:
        outcomes = {c["check"]: c["outcome"] for c in files[name]["checks"]}
        assert "block" in outcomes.values(), (name, outcomes)
    by_site = {c["check"]: c for c in files["by_site.csv"]["checks"]}
    assert by_site["sdc:differencing"]["outcome"] == "block"
    assert "relapsed=3" not in seen.text and "3*" not in seen.text and "<10" not in seen.text


def test_what_the_job_wrote_stays_with_the_reviewers(
    tmp_path: Path, policy: Policy, context: CheckContext
) -> None:
    results = run_planted(tmp_path, LEAKS["relapsed_kv.txt"], policy, context)
    found = [r for r in results if r.check == "sdc:threshold"]
    shown = json.dumps(checking.for_requester([r.model_dump() for r in found]))
    assert "relapsed" not in shown and "relapsed" in json.dumps(
        [r.evidence.get("reviewer_only") for r in found]
    )
