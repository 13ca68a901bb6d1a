"""Which outputs are recorded when a job writes more files than its policy records.

`job.max_output_files` bounds a channel (names and sizes are the job's choice), so past it
files are not recorded. The scan recorded the first files of its depth-first walk, so a
cohort job's ``manifest.json`` (sorting after its ``images/`` or ``series/`` folder) was
among those dropped, and with it the one file that says which output is which series. Now
the files nearest the top of the tree are recorded first (depth, then path).
"""

from __future__ import annotations

from pathlib import Path

from tre.jobs.outputs import scan_output_tree


def _tree(root: Path) -> list[str]:
    names = [
        "manifest.json",
        "results.csv",
        *(f"series/series-{i:05d}{s}" for i in range(1, 5) for s in (".json", ".nii.gz")),
        "a/deep/er/note.txt",
        "bad\nname.txt",  # never recordable: takes no place from a recordable file
    ]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    return names


def test_over_the_limit_the_top_of_the_tree_is_recorded_first(tmp_path: Path) -> None:
    _tree(tmp_path)
    scan = scan_output_tree(tmp_path, max_files=5)
    recorded = [p for p, _, _ in scan.files]
    # In walk order (folders and files by name), chosen by depth then path.
    assert recorded == [
        "manifest.json",
        "results.csv",
        "series/series-00001.json",
        "series/series-00001.nii.gz",
        "series/series-00002.json",
    ]
    assert scan.skipped == 12 - 5
    assert scan_output_tree(tmp_path, max_files=5).files == scan.files  # the same every time


def test_never_more_than_the_limit_and_all_of_a_tree_that_fits(tmp_path: Path) -> None:
    names = _tree(tmp_path)
    for limit in (0, 1, 2, 3, 11):
        scan = scan_output_tree(tmp_path, max_files=limit)
        assert len(scan.files) == limit and scan.skipped == 12 - limit
    whole = scan_output_tree(tmp_path, max_files=200)
    recordable = sorted(n for n in names if "\n" not in n)
    assert sorted(p for p, _, _ in whole.files) == recordable and whole.skipped == 1
    assert [p for p, _, _ in whole.files] == sorted(recordable, key=lambda p: p.split("/"))  # walk order
    assert scan_output_tree(tmp_path, max_files=1).files[0][0] == "manifest.json"
