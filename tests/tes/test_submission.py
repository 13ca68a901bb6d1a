"""The task -> job plan: what tre accepts of a TES document, what it refuses and why, and the
executor wrapper, which is run by a real /bin/sh here."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.worlds import IMAGE
from tre.tes.models import TesTask
from tre.tes.submission import TaskRefused, executor_command, plan_task


def doc(**changes: Any) -> TesTask:
    body: dict[str, Any] = {
        "executors": [{"image": IMAGE, "command": ["python3", "a.py"]}],
        "tags": {"Project": "lung"},
    }
    body.update(changes)
    return TesTask.model_validate(body)


def test_plan_maps_code_datasets_and_resources() -> None:
    plan = plan_task(
        doc(
            inputs=[
                {"path": "/code/a.py", "content": "print('a')\n"},
                {"path": "/code/pkg/b.py", "content": "B = 1\n"},
                {"url": "tre://dataset/ct1", "path": "/data/ct1", "type": "DIRECTORY"},
            ],
            tags={"Project": "lung", "Datasets": "ct2, ct1"},
            resources={"cpu_cores": 4, "ram_gb": 1.5, "disk_gb": 0.25, "backend_parameters": {"gpu": "1"}},
        )
    )
    req = plan.request
    assert req.project_id == "lung" and req.image == IMAGE and req.command == ["python3", "a.py"]
    assert req.dataset_ids == ["ct2", "ct1"]
    assert (req.cpu, req.memory_mb, req.output_limit_mb, req.gpu) == (4.0, 1536, 256, 1)
    assert plan.code_files == {"a.py": b"print('a')\n", "pkg/b.py": b"B = 1\n"}
    # tre's defaults where the task says nothing.
    default = plan_task(doc()).request
    assert (default.cpu, default.memory_mb, default.gpu, default.code_hash) == (1.0, 1024, 0, None)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tags": {}}, "no 'Project' tag"),
        ({"tags": {"Project": "lung", "tre.egress": "approved"}}, "set by tre itself"),
        ({"volumes": ["/scratch"]}, "no shared volumes"),
        ({"executors": [{"image": IMAGE, "command": ["a"]}] * 2}, "one executor per task"),
        ({"inputs": [{"path": "/etc/passwd", "content": "x"}]}, "is not under /code"),
        ({"inputs": [{"path": "/code/../etc/x", "content": "x"}]}, "contains '..'"),
        ({"inputs": [{"path": "/code", "content": "x"}]}, "must name a file under /code"),
        ({"inputs": [{"path": "/data/x", "url": "s3://bucket/x"}]}, "no network"),
        ({"inputs": [{"path": "/data/x", "url": "file:///etc/passwd"}]}, "no network"),
        ({"inputs": [{"path": "/data/x"}]}, "neither url nor content"),
        ({"inputs": [{"path": "/data/x", "url": "tre://dataset/ct1"}]}, "is mounted at /data "),
        (
            {
                "inputs": [{"path": "/data", "url": "tre://dataset/ct1"}],
                "tags": {"Project": "lung", "Datasets": "ct2"},
            },
            "is mounted at /data/ct1",
        ),
        ({"outputs": [{"path": "/code/x", "url": "s3://b/x"}]}, "is not under /output"),
        ({"outputs": [{"path": "/output/../x", "url": "s3://b/x"}]}, "contains '..'"),
        ({"resources": {"zones": ["eu-west"]}}, "no zones"),
        ({"resources": {"backend_parameters": {"gpu": "two"}}}, "whole number"),
        (
            {"resources": {"backend_parameters": {"queue": "fast"}, "backend_parameters_strict": True}},
            "'queue' is not supported",
        ),
        ({"executors": [{"image": IMAGE, "command": ["a"], "env": {"A-B": "1"}}]}, "not a valid name"),
        ({"executors": [{"image": IMAGE, "command": ["a"], "workdir": "rel"}]}, "must be an absolute path"),
        ({"inputs": [{"path": "/code/a.py", "content": "x = '\ud800'"}]}, "not valid Unicode"),
    ],
)
def test_refusals_say_why(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(TaskRefused) as refused:
        plan_task(doc(**changes))
    assert reason in refused.value.detail


def test_unknown_backend_parameters_are_ignored_unless_strict() -> None:
    plan = plan_task(doc(resources={"backend_parameters": {"queue": "fast"}}))
    assert plan.request.gpu == 0


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        doc(executors=[{"image": IMAGE, "command": ["a"], "privileged": True}])


def test_wrapper_runs_in_a_real_shell(tmp_path: Path) -> None:
    """workdir, env and the three redirections, with arguments that a shell would mangle."""
    (tmp_path / "in.txt").write_text("from stdin\n")
    executor = doc(
        executors=[
            {
                "image": IMAGE,
                "command": [
                    "python3",
                    "-c",
                    "import os, sys; print(os.getcwd(), os.environ['MSG'], sys.argv[1:],"
                    " sys.stdin.read().strip()); print('err', file=sys.stderr)",
                    "$(touch pwned)",
                    "a b;c",
                ],
                "workdir": str(tmp_path),
                "env": {"MSG": "it's $HOME"},
                "stdin": str(tmp_path / "in.txt"),
                "stdout": str(tmp_path / "out.txt"),
                "stderr": str(tmp_path / "err.txt"),
            }
        ]
    ).executors[0]
    command = executor_command(executor)
    assert command[0] == "/bin/sh" and command[4:] == executor.command
    subprocess.run(command, check=True, timeout=30, cwd="/")
    assert (tmp_path / "out.txt").read_text() == (
        f"{tmp_path} it's $HOME ['$(touch pwned)', 'a b;c'] from stdin\n"
    )
    assert (tmp_path / "err.txt").read_text() == "err\n"
    assert not (tmp_path / "pwned").exists() and not Path("/pwned").exists()
    # Nothing to wrap: the command as given, no shell.
    assert executor_command(doc().executors[0]) == ["python3", "a.py"]


def test_a_name_longer_than_the_column_is_refused_by_the_schema() -> None:
    assert doc(name="n" * 256).name == "n" * 256
    with pytest.raises(ValueError, match="at most 256"):
        doc(name="n" * 257)


def test_lone_surrogates_in_bounded_fields_are_refused_by_the_schema() -> None:
    for changes in ({"inputs": [{"path": "/code/\udcff.py", "content": "x"}]}, {"tags": {"k\ud800": "v"}}):
        with pytest.raises(ValueError, match="unicode"):
            doc(**changes)
