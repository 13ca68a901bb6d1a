"""The one interface every job backend implements (local sandbox, Kubernetes, Docker).

The worker owns the job record; an executor only turns a `JobSpec` into a finished
`JobResult`, writing the job's combined log to ``spec.log_path`` and its files under
``spec.output_dir`` on the control-plane host. Keeping the contract that small is what lets
the same admission, state machine, output hashing and audit code serve every backend.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tre.states import JobState


class ExecutorError(RuntimeError):
    """The backend could not run the job at all (misconfiguration, missing tool)."""


@dataclass(frozen=True)
class DatasetMount:
    """A dataset the job may read. ``host_path`` for local/docker, ``pvc_name`` for Kubernetes."""

    dataset_id: str
    host_path: Path | None = None
    pvc_name: str | None = None
    mount_path: str = "/data"


@dataclass(frozen=True)
class InputMount:
    """An earlier job's outputs the job reads, read-only at ``mount_path`` (/inputs/<job id>).

    ``host_path`` is that job's output folder on the control-plane host (local, docker);
    Kubernetes reaches the same folder through the read-only job-outputs claim."""

    job_id: str
    host_path: Path
    mount_path: str


# The environment variable names the local sandbox sets: shell identifiers. One rule for the
# job's own variables, the image's Env (refused at import, `tre.images.layout`, so an image
# that imports is one every job can start with) and the executors' extras.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_env_name(name: str) -> bool:
    """Whether ``name`` is a variable name the sandbox sets (whole string: no line break)."""
    return ENV_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config a job runs with (``config`` of the image's config blob).

    Kept as plain data so every backend honours the same fields: the local sandbox applies
    them to the unpacked root filesystem; Kubernetes and Docker get them from the registry.
    """

    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    # The config's declared ``Volumes`` (paths). No backend grants them: Docker and Kubernetes
    # cover each with an empty read-only mount (their engines would make each a writable
    # folder on the host's disk); the local sandbox makes nothing for them.
    volumes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    project_id: str
    image: str
    command: list[str]
    datasets: list[DatasetMount]
    output_dir: Path
    log_path: Path
    cpu: float = 1.0
    memory_mb: int = 1024
    gpu: int = 0
    time_limit_s: int = 600
    output_limit_mb: int = 256
    max_processes: int = 256
    env: dict[str, str] = field(default_factory=dict)
    # Optional sandboxed runtime (gVisor `runsc`, Kata) chosen by policy; Kubernetes only.
    runtime_class: str | None = None
    # The unpacked, read-only root filesystem of the job's image (local backend) and its
    # config; None only in the explicitly enabled host-toolchain developer mode.
    rootfs: Path | None = None
    image_config: ImageConfig | None = None
    # The researcher's code: an unpacked tree mounted read-only at /code (local, docker) and
    # its content hash (SHA-256 of the stored archive) for backends that fetch it themselves.
    code_dir: Path | None = None
    code_hash: str | None = None
    # Earlier jobs' outputs, read-only at /inputs/<job id> (tre.jobs.lineage).
    inputs: list[InputMount] = field(default_factory=list)


@dataclass(frozen=True)
class JobResult:
    """How a run ended. The state is checked to be terminal on construction, so a backend
    cannot report a job as still queued or running by mistake."""

    state: JobState
    exit_code: int | None
    reason: str

    def __post_init__(self) -> None:
        state = JobState(self.state)
        if not state.terminal:
            raise ValueError(f"a finished job cannot be {state}")
        object.__setattr__(self, "state", state)


@dataclass
class RunControl:
    """What the worker lends a running executor: cancellation, progress and liveness hooks."""

    is_cancelled: Callable[[], bool] = lambda: False
    on_started: Callable[[str], None] = lambda ref: None
    heartbeat: Callable[[], None] = lambda: None


class Executor(ABC):
    name: ClassVar[str]
    # Whether a restarted worker can pick a still-running job back up (Kubernetes can; a
    # local sandbox dies with its worker because of --die-with-parent).
    supports_reattach: ClassVar[bool] = False

    @abstractmethod
    def run(self, spec: JobSpec, control: RunControl) -> JobResult:
        """Run the job to completion (blocking) and return how it ended."""

    def clean_leftovers(self) -> int:
        """Clean up what sandboxes of workers that died left on this machine (mounts, image
        files, scratch folders, cgroups), keeping what their jobs wrote; return how many
        leftovers were cleaned. Nothing of a live worker's job is touched. Backends whose
        sandboxes leave nothing on the worker's machine have nothing to do."""
        return 0

    def reattach(self, spec: JobSpec, executor_ref: str, control: RunControl) -> JobResult:
        """Follow a job started by a previous worker process; see `supports_reattach`."""
        raise ExecutorError(f"the {self.name} executor cannot reattach to a running job")
