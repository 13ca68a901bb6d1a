"""aggregation/combine_counts.py runs on a `tre hub results` folder: released files only,
each checked against the hash the hub verified."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "aggregation" / "combine_counts.py"


def results_folder(tmp: Path, files: dict[str, bytes], refused: tuple[str, ...] = ()) -> Path:
    children = []
    for node, data in files.items():
        (tmp / node).mkdir(parents=True)
        (tmp / node / "result.txt").write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        children.append({"node": node, "state": "released", "files": [{"name": "result.txt", "sha256": sha}]})
    children += [{"node": n, "state": "refused", "files": []} for n in refused]
    (tmp / "job.json").write_text(json.dumps({"id": "j", "children": children}))
    return tmp


def run(folder: Path, name: str = "result.txt") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder), name], capture_output=True, text=True)


def test_combines_what_each_node_released(tmp_path: Path) -> None:
    folder = results_folder(
        tmp_path, {"node-a": b"images read: 2\n", "node-b": b"images read: 5\nnote\n"}, ("node-c",)
    )
    done = run(folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "node,label,value",
        "node-a,images read,2",
        "node-b,images read,5",
        "total,images read,7",
    ]


def test_refuses_a_file_that_is_not_what_was_released(tmp_path: Path) -> None:
    folder = results_folder(tmp_path, {"node-a": b"images read: 2\n"})
    (folder / "node-a" / "result.txt").write_bytes(b"images read: 200\n")
    done = run(folder)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: node-a/result.txt does not match its released SHA-256"


def test_a_file_no_node_released_or_without_counts_is_an_error_not_an_empty_table(tmp_path: Path) -> None:
    """Following docs/federation.md with another file name (summary.csv), or a file of
    another shape, printed only the header and exited 0, as though every count were zero."""
    folder = results_folder(tmp_path / "a", {"node-a": b"images read: 2\n"}, ("node-b",))
    missing = run(folder, "summary.csv")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == "error: no node released 'summary.csv'; released: result.txt"
    shapeless = run(results_folder(tmp_path / "b", {"node-a": b"file,n\nx,4\n"}))
    assert shapeless.returncode == 1 and "holds no 'label: number' lines" in shapeless.stderr
