"""Progress lines through the researcher's log screen: the fixed vocabulary passes, anything
dressed up as it is withheld, and counts must agree with the earlier lines."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from egress_review.logscreen import PROGRESS_INCONSISTENT, PROGRESS_OUTSIDE_VOCABULARY, LogScreen
from tests.core.test_log_screen import _screen
from tests.kernels.test_cohort import argv, make_cohort
from tests.worlds import job_body
from tre.jobs.worker import Worker
from tre.kernels.job import run
from tre.kernels.progress import REASONS, Progress, SeriesResult, parse


def shown(screen: LogScreen, lines: list[str]) -> list[str]:
    log = "".join(line + "\n" for line in lines).encode()
    return screen.render(screen.screen_log(log, final=True), 0).decode().splitlines()


def test_a_real_cohort_log_passes_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_cohort(tmp_path / "in")  # three good series and one with two slices at one position
    assert run(argv(tmp_path / "in", tmp_path / "out")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "tre-series: 4/4 failed: not-one-stack" in lines
    assert shown(_screen(), lines) == lines


def test_a_large_cohort_is_not_mistaken_for_encoded_data() -> None:
    total = 1500
    lines = [Progress(0, total, 0).line()]
    for i in range(1, total + 1):
        failed = i // 7
        outcome = "failed" if i % 7 == 0 else "ok"
        lines.append(
            SeriesResult(i, total, outcome, "missing-slices" if outcome == "failed" else None).line()
        )
        lines.append(Progress(i, total, failed).line())
    assert shown(_screen(), lines) == lines


SMUGGLED = [
    "tre-progress: 12/40 series done, 1 failed ab12",
    "tre-progress: 12/40 series done, 1 failed; first=PAT-12",
    "tre-series: 3/40 failed: PAT-123",
    "tre-series: 3/40 failed: missing-slices (between 12.5 and 15 mm)",
    "tre-series: 3/40 ok patient Smith",
    "TRE-Progress: 12/40 series done, 1 failed",
    "tre-progress: 012/40 series done, 1 failed",
    "tre-progress:  12/40 series done, 1 failed",
    " tre-progress: 12/40 series done, 1 failed",
    "tre-progress: 12/40 series done, 1 failed\x1b]52;c;aGk=\x07",
    "tre-series:\t3/40 ok",
    "status tre-progress: 12/40 series done, 1 failed",
    "tre_series 3/40 ok",
    "tre-progress: 41/40 series done, 1 failed",
    "tre-progress: 12/40 series done, 13 failed",
    "tre-series: 0/40 ok",
    "tre-progress: 1234567/9999999 series done, 0 failed",
    "tre-progress: 12/40 series done, -1 failed",
]


@pytest.mark.parametrize("line", SMUGGLED)
def test_text_dressed_as_progress_is_withheld(line: str) -> None:
    lines = ["tre-progress: 0/40 series done, 0 failed", line, "epoch 1 loss 0.3"]
    out = shown(_screen(), lines)
    assert out == [lines[0], PROGRESS_OUTSIDE_VOCABULARY, "epoch 1 loss 0.3"]
    assert parse(line) is None


@pytest.mark.parametrize(
    "later",
    [
        "tre-progress: 4/40 series done, 0 failed",  # done went down
        "tre-progress: 6/40 series done, 0 failed",  # failed went down
        "tre-progress: 6/41 series done, 1 failed",  # another cohort size
        "tre-series: 5/40 ok",  # series 5 reported twice
        "tre-series: 2/39 ok",
    ],
)
def test_counts_that_contradict_earlier_lines_are_withheld(later: str) -> None:
    lines = ["tre-series: 5/40 failed: undecodable-pixels", "tre-progress: 5/40 series done, 1 failed", later]
    assert shown(_screen(), lines) == [*lines[:2], PROGRESS_INCONSISTENT]


def test_ordinary_words_are_not_taken_for_progress_lines() -> None:
    lines = ["centre progress: 3 of 5 sites", "entre series de datos", "series 3 done, progress ok"]
    assert shown(_screen(), lines) == lines


def test_every_reason_code_passes_and_others_do_not() -> None:
    lines = [SeriesResult(i + 1, len(REASONS), "failed", code).line() for i, code in enumerate(REASONS)]
    assert shown(_screen(), lines) == lines
    assert shown(_screen(), ["tre-series: 1/2 failed: disk-full"]) == [PROGRESS_OUTSIDE_VOCABULARY]


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")
def test_a_sandboxed_job_smuggling_through_progress_lines(app_client, world, engine, settings):  # type: ignore[no-untyped-def]
    script = (
        "import pydicom; ds = pydicom.dcmread('/data/CT_small.dcm');"
        "print('tre-progress: 0/2 series done, 0 failed');"
        "print('tre-series: 1/2 failed: missing-slices', len(ds.PixelData));"
        "print('tre-series: 1/2 ok');"
        "print('tre-progress: 1/2 series done, 0 failed');"
        "print('tre-progress: 1/2 series done, 0 failed, name', str(ds.PatientName).split('^')[0][::-1])"
    )
    r = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json=job_body(command=["python3", "-c", script])
    )
    job_id = r.json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=60)
    mine = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["alice"]).text
    raw = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["audrey"]).text
    job_lines = [ln for ln in mine.splitlines() if not ln.startswith("[tre] local sandbox")]
    assert job_lines[:4] == [
        "tre-progress: 0/2 series done, 0 failed",
        PROGRESS_OUTSIDE_VOCABULARY,  # a number from the data riding on a genuine-looking line
        "tre-series: 1/2 ok",
        "tre-progress: 1/2 series done, 0 failed",
    ]
    # A name on a progress line is withheld too (the identifier screen still applies).
    family = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName).split("^")[0]
    assert job_lines[4].startswith("[tre] withheld") and family[::-1] not in mine
    assert "failed: missing-slices " in raw and family[::-1] in raw  # staff see what the job printed
