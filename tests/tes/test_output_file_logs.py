"""A task view's output file logs are bounded: a job may record 100,000 outputs, and a page of
64 tasks listed a file log for every one of each, matched against every declared output."""

from __future__ import annotations

from tre.store.models import TesTask
from tre.tes.views import MAX_OUTPUT_FILE_LOGS, ShownOutput, _output_logs

JOB = "0" * 32


def _shown(n: int) -> list[ShownOutput]:
    return [ShownOutput(i, f"many/f{i:05d}.txt", i % 7 != 3, 1) for i in range(n)]


def test_a_directory_output_lists_at_most_the_bound_and_says_so() -> None:
    row = TesTask(job_id=JOB, outputs=[{"path": "/output", "type": "DIRECTORY"}])
    logs, cut = _output_logs(_shown(2_500), row)
    assert cut and len(logs) == MAX_OUTPUT_FILE_LOGS == 1000
    # In index order, withheld names as their index, as before the bound.
    assert [log.path for log in logs[:5]] == [
        "/output/many/f00000.txt",
        "/output/many/f00001.txt",
        "/output/many/f00002.txt",
        "#3",
        "/output/many/f00004.txt",
    ]
    assert logs[-1].url == f"tre://jobs/{JOB}/outputs/999"


def test_under_the_bound_nothing_is_cut() -> None:
    row = TesTask(job_id=JOB, outputs=[{"path": "/output/many", "type": "DIRECTORY"}])
    logs, cut = _output_logs(_shown(700), row)
    assert not cut and len(logs) == 600  # the 100 withheld names are not said to lie below it


def test_declared_files_are_found_by_path_among_many_outputs() -> None:
    declared = [{"path": f"/output/many/f{i:05d}.txt", "type": "FILE"} for i in (99_999, 3, 5)]
    row = TesTask(job_id=JOB, outputs=declared)
    logs, cut = _output_logs(_shown(100_000), row)
    assert not cut
    assert [log.url.rsplit("/", 1)[1] for log in logs] == ["99999", "5"]  # 3 is withheld
