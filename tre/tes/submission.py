"""A TES task document onto a tre job request: what runs, on which data, with which code.

The rules (docs/tes.md): one executor; inline inputs (``content``) must lie under ``/code``
and become the job's code archive, read-only like any ``tre submit --code``; inputs by URL
only as ``tre://dataset/<id>`` at the path tre mounts that dataset (``/data`` for one,
``/data/<id>`` for several), since a job has no network; outputs must lie under ``/output``
and are never uploaded anywhere (they leave only through the airlock); ``tags.Project``
names the project. Nothing here touches the database: the plan is checked first, then
`tre.tes.service` stores the code and submits through the same admission as the CLI.
"""

from __future__ import annotations

import math
import posixpath
import re
import shlex
from dataclasses import dataclass, field

from tre.errors import TreError
from tre.jobs.admission import JobRequest
from tre.tes.models import FileType, TesExecutor, TesInput, TesOutput, TesResources, TesTask

DATASET_SCHEME = "tre://dataset/"
CODE_ROOT = "/code"
OUTPUT_ROOT = "/output"
DATA_ROOT = "/data"
PROJECT_TAG = "Project"
DATASETS_TAG = "Datasets"
RESERVED_TAG_PREFIX = "tre."
# backend_parameters tre understands (TES's place for backend extensions).
BACKEND_PARAMETERS = ("gpu", "time_limit_s")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class TaskRefused(TreError):
    """The task asks for something tre does not do; the reason says what and why."""

    status = 400
    title = "TES task refused"
    slug = "tes-task-refused"


@dataclass
class TaskPlan:
    request: JobRequest
    # Inline inputs: path relative to /code -> bytes, packed into the job's code archive.
    code_files: dict[str, bytes] = field(default_factory=dict)


def plan_task(task: TesTask) -> TaskPlan:
    _check_unicode(task.model_dump())
    tags = dict(task.tags or {})
    project_id = _project(tags)
    if task.volumes:
        raise TaskRefused("tre jobs have no shared volumes; write results under /output")
    if len(task.executors) != 1:
        raise TaskRefused(
            f"tre runs one executor per task (this one has {len(task.executors)}); "
            "submit each step as its own task"
        )
    executor = task.executors[0]
    datasets = _tag_datasets(tags)
    dataset_inputs: list[tuple[TesInput, str]] = []
    code_files: dict[str, bytes] = {}
    for item in task.inputs or []:
        if item.content is not None:
            if item.url is not None:
                raise TaskRefused(f"input {item.path!r} has both url and content; give one")
            rel = _code_path(item)
            if rel in code_files:
                raise TaskRefused(f"two inputs are written to {item.path!r}")
            code_files[rel] = item.content.encode("utf-8")
        elif item.url is not None:
            dataset_id = _dataset_of(item)
            if dataset_id not in datasets:
                datasets.append(dataset_id)
            dataset_inputs.append((item, dataset_id))
        else:
            raise TaskRefused(f"input {item.path!r} has neither url nor content")
    for item, dataset_id in dataset_inputs:
        mount = DATA_ROOT if len(datasets) == 1 else f"{DATA_ROOT}/{dataset_id}"
        if posixpath.normpath(item.path) != mount:
            raise TaskRefused(
                f"input {item.path!r}: dataset {dataset_id!r} is mounted at {mount} (tre mounts one "
                "dataset at /data, several at /data/<id>)"
            )
    for output in task.outputs or []:
        _check_output(output)
    cpu, memory_mb, output_limit_mb, gpu, time_limit_s = _resources(task.resources)
    request = JobRequest(
        project_id=project_id,
        image=executor.image,
        command=executor_command(executor),
        dataset_ids=datasets,
        cpu=cpu,
        memory_mb=memory_mb,
        gpu=gpu,
        time_limit_s=time_limit_s,
        output_limit_mb=output_limit_mb,
    )
    return TaskPlan(request=request, code_files=code_files)


def _check_unicode(value: object) -> None:
    """JSON may carry lone surrogates, which no file name, command line or database takes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TaskRefused("the task holds text that is not valid Unicode (a lone surrogate)") from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key)
            _check_unicode(item)
    elif isinstance(value, list):
        for item in value:
            _check_unicode(item)


def _project(tags: dict[str, str]) -> str:
    for key in tags:
        # Any case: `TRE.node.x` beside the hub's `tre.node.x` reads as the same tag.
        if key.casefold().startswith(RESERVED_TAG_PREFIX):
            raise TaskRefused(f"tag {key!r}: tags starting with 'tre.' are set by tre itself")
    project_id = tags.get(PROJECT_TAG, "").strip()
    if not project_id:
        raise TaskRefused("the task has no 'Project' tag; tags.Project names the tre project to run in")
    if not _SLUG.match(project_id):
        raise TaskRefused("tag 'Project' is not a project id")
    return project_id


def _tag_datasets(tags: dict[str, str]) -> list[str]:
    ids: list[str] = []
    for raw in tags.get(DATASETS_TAG, "").split(","):
        dataset_id = raw.strip()
        if not dataset_id:
            continue
        if not _SLUG.match(dataset_id):
            raise TaskRefused("tag 'Datasets' must be a comma-separated list of dataset ids")
        if dataset_id not in ids:
            ids.append(dataset_id)
    return ids


def _inside(path: str, root: str, what: str) -> str:
    """``path`` relative to ``root`` ('' for root itself); refused if it leaves it."""
    if not path.startswith("/"):
        raise TaskRefused(f"{what} {path!r} is not an absolute path")
    if "\x00" in path or any(part == ".." for part in path.split("/")):
        raise TaskRefused(f"{what} {path!r} contains '..' or a NUL character")
    norm = posixpath.normpath(path)
    if norm == root:
        return ""
    if not norm.startswith(root + "/"):
        raise TaskRefused(f"{what} {path!r} is not under {root}")
    return norm[len(root) + 1 :]


def _code_path(item: TesInput) -> str:
    if item.type != FileType.FILE:
        raise TaskRefused(f"inline input {item.path!r} must be of type FILE")
    try:
        rel = _inside(item.path, CODE_ROOT, "inline input")
    except TaskRefused as exc:
        raise TaskRefused(
            f"{exc.detail}: inline inputs become the job's code, read-only at /code "
            "(datasets are at /data, results go to /output)"
        ) from exc
    if not rel:
        raise TaskRefused(f"inline input {item.path!r} must name a file under /code")
    return rel


def _dataset_of(item: TesInput) -> str:
    url = item.url or ""
    if not url.startswith(DATASET_SCHEME):
        raise TaskRefused(
            f"input {item.path!r}: tre jobs have no network, so inputs are fetched from nowhere; "
            "name a dataset as tre://dataset/<id> or give the file's content inline"
        )
    dataset_id = url[len(DATASET_SCHEME) :].rstrip("/")
    if not _SLUG.match(dataset_id):
        raise TaskRefused(f"input {item.path!r}: {url!r} does not name a dataset (tre://dataset/<id>)")
    return dataset_id


def _check_output(output: TesOutput) -> None:
    try:
        _inside(output.path, OUTPUT_ROOT, "output")
        if output.path_prefix is not None:
            _inside(output.path_prefix, OUTPUT_ROOT, "output path_prefix")
    except TaskRefused as exc:
        raise TaskRefused(
            f"{exc.detail}: a job writes only to /output, and its files leave only through the airlock"
        ) from exc


def _ceil_mib(gib: float) -> int:
    return max(1, math.ceil(gib * 1024))


def _resources(res: TesResources | None) -> tuple[float, int, int, int, int]:
    """(cpu, memory MiB, output limit MiB, gpus, time limit s), tre's defaults where unset."""
    default = JobRequest(project_id="", image="", command=[])
    if res is None:
        return default.cpu, default.memory_mb, default.output_limit_mb, default.gpu, default.time_limit_s
    if res.zones:
        raise TaskRefused("tre has no zones; leave resources.zones empty")
    params = dict(res.backend_parameters or {})
    unknown = sorted(set(params) - set(BACKEND_PARAMETERS))
    if unknown and res.backend_parameters_strict:
        raise TaskRefused(
            f"backend parameter {unknown[0]!r} is not supported (tre knows: {', '.join(BACKEND_PARAMETERS)})"
        )
    gpu = _int_parameter(params, "gpu", default.gpu)
    time_limit_s = _int_parameter(params, "time_limit_s", default.time_limit_s)
    return (
        float(res.cpu_cores) if res.cpu_cores else default.cpu,
        _ceil_mib(res.ram_gb) if res.ram_gb else default.memory_mb,
        _ceil_mib(res.disk_gb) if res.disk_gb else default.output_limit_mb,
        gpu,
        time_limit_s,
    )


def _int_parameter(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    text = str(raw).strip()
    # ASCII digits: str.isdigit takes superscripts too ('²'), which int refuses (a 500).
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise TaskRefused(f"backend parameter {name!r} must be a whole number")
    return int(text)


def executor_command(executor: TesExecutor) -> list[str]:
    """The executor's command, wrapped in ``/bin/sh`` only when it asks for a working
    directory, environment or redirections: the command itself stays separate arguments
    (``exec "$@"``), never text the shell parses."""
    if not (executor.workdir or executor.env or executor.stdin or executor.stdout or executor.stderr):
        return list(executor.command)
    lines: list[str] = []
    if executor.workdir:
        lines.append(f"cd {shlex.quote(_absolute(executor.workdir, 'workdir'))} || exit 126")
    for name, value in (executor.env or {}).items():
        if not _ENV_NAME.match(name):
            raise TaskRefused(f"environment variable name {name[:64]!r} is not a valid name")
        if "\x00" in value:
            raise TaskRefused(f"environment variable {name!r} contains a NUL character")
        lines.append(f"export {name}={shlex.quote(value)}")
    redirect = ""
    for symbol, path, what in (
        ("<", executor.stdin, "stdin"),
        (">", executor.stdout, "stdout"),
        ("2>", executor.stderr, "stderr"),
    ):
        if path:
            redirect += f" {symbol}{shlex.quote(_absolute(path, what))}"
    lines.append(f'exec "$@"{redirect}')
    return ["/bin/sh", "-c", "\n".join(lines), "tes-executor", *executor.command]


def _absolute(path: str, what: str) -> str:
    if not path.startswith("/") or "\x00" in path:
        raise TaskRefused(f"executor {what} {path[:256]!r} must be an absolute path")
    return path
