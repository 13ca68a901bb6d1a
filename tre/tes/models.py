"""The TES 1.1 schema as pydantic models: exactly its fields, nothing of tre's.

Clients such as py-tes refuse a response holding a field or a state they do not know, so
responses are built only from these models and serialised without unset fields. Requests
with unknown fields are refused too: a field tre would silently ignore could be one the
author relies on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Bounds on what one task document may hold (the request body is capped at 1 MiB anyway).
MAX_ITEMS = 1000
MAX_PATH = 4096
MAX_TEXT = 65_536
MAX_TAGS = 64
MAX_NAME = 256  # tes_tasks.name


class TesState(StrEnum):
    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"
    CANCELING = "CANCELING"


class View(StrEnum):
    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    FULL = "FULL"


class FileType(StrEnum):
    FILE = "FILE"
    DIRECTORY = "DIRECTORY"


class _Tes(BaseModel):
    model_config = ConfigDict(extra="forbid")


Path = Annotated[str, Field(max_length=MAX_PATH)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Short = Annotated[str, Field(max_length=1024)]


class TesInput(_Tes):
    name: Short | None = None
    description: Text | None = None
    url: Path | None = None
    path: Path
    type: FileType = FileType.FILE
    content: str | None = None
    streamable: bool | None = None


class TesOutput(_Tes):
    name: Short | None = None
    description: Text | None = None
    url: Path
    path: Path
    path_prefix: Path | None = None
    type: FileType = FileType.FILE


class TesResources(_Tes):
    cpu_cores: int | None = Field(default=None, ge=0, le=1024)
    preemptible: bool | None = None
    ram_gb: float | None = Field(default=None, ge=0, le=65_536)
    disk_gb: float | None = Field(default=None, ge=0, le=1_048_576)
    zones: list[Short] | None = Field(default=None, max_length=64)
    backend_parameters: dict[Short, Short] | None = Field(default=None, max_length=64)
    backend_parameters_strict: bool | None = None


class TesExecutor(_Tes):
    image: Annotated[str, Field(min_length=1, max_length=512)]
    command: list[Text] = Field(min_length=1, max_length=4096)
    workdir: Path | None = None
    stdin: Path | None = None
    stdout: Path | None = None
    stderr: Path | None = None
    env: dict[Short, Text] | None = Field(default=None, max_length=256)
    ignore_error: bool | None = None


class TesExecutorLog(_Tes):
    start_time: str | None = None
    end_time: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int


class TesOutputFileLog(_Tes):
    url: str
    path: str
    size_bytes: str  # a string in TES 1.1: JSON numbers cannot carry every int64


class TesTaskLog(_Tes):
    logs: list[TesExecutorLog]
    metadata: dict[str, str] | None = None
    start_time: str | None = None
    end_time: str | None = None
    outputs: list[TesOutputFileLog]
    system_logs: list[str] | None = None


class TesTask(_Tes):
    id: str | None = None
    state: TesState | None = None
    name: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    description: Text | None = None
    inputs: list[TesInput] | None = Field(default=None, max_length=MAX_ITEMS)
    outputs: list[TesOutput] | None = Field(default=None, max_length=MAX_ITEMS)
    resources: TesResources | None = None
    executors: list[TesExecutor] = Field(min_length=1, max_length=MAX_ITEMS)
    volumes: list[Path] | None = Field(default=None, max_length=MAX_ITEMS)
    tags: dict[Short, Short] | None = Field(default=None, max_length=MAX_TAGS)
    logs: list[TesTaskLog] | None = None
    creation_time: str | None = None


class TesTaskView(_Tes):
    """A task as answered: every field optional, since MINIMAL holds only id and state."""

    id: str
    state: TesState
    name: str | None = None
    description: str | None = None
    inputs: list[TesInput] | None = None
    outputs: list[TesOutput] | None = None
    resources: TesResources | None = None
    executors: list[TesExecutor] | None = None
    volumes: list[str] | None = None
    tags: dict[str, str] | None = None
    logs: list[TesTaskLog] | None = None
    creation_time: str | None = None


class TesCreateTaskResponse(_Tes):
    id: str


class TesListTasksResponse(_Tes):
    tasks: list[TesTaskView]
    next_page_token: str | None = None


class TesCancelTaskResponse(_Tes):
    pass


class ServiceOrganization(_Tes):
    name: str
    url: str


class TesServiceType(_Tes):
    group: str
    artifact: str
    version: str


class TesServiceInfo(BaseModel):
    """GA4GH service-info with TES's two extensions; camelCase names as the schema has them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    name: str
    type: TesServiceType
    description: str | None = None
    organization: ServiceOrganization
    contactUrl: str | None = None  # noqa: N815 - the schema's name
    documentationUrl: str | None = None  # noqa: N815
    createdAt: str | None = None  # noqa: N815
    updatedAt: str | None = None  # noqa: N815
    environment: str | None = None
    version: str
    storage: list[str] | None = None
    tesResources_backend_parameters: list[str] | None = None  # noqa: N815
