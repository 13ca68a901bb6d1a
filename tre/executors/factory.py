"""Pick the executor backend named in settings (one interface, several backends)."""

from __future__ import annotations

from tre.config import Settings
from tre.executors.base import Executor


def check_executor_settings(settings: Settings, name: str | None = None) -> None:
    """Check the named executor's settings against this host (raises `SettingsError`).

    A process that will run jobs calls it first, before its heavy imports and the database:
    a wrong TRE_SANDBOX_* value then stops `tre serve`/`tre worker` within a second with one
    line (it took ~4.5 CPU-s of imports to say so), not at the first job."""
    name = name or settings.executor
    if name == "local":
        from tre.executors.sandbox_settings import check_local_sandbox_settings

        check_local_sandbox_settings(settings)
    elif name == "docker":
        from tre.executors.sandbox_settings import check_sandbox_uid_range

        check_sandbox_uid_range(settings)  # its containers take their uids from the same range


def make_executor(settings: Settings, name: str | None = None) -> Executor:
    name = name or settings.executor
    if name not in ("local", "kubernetes", "docker"):
        raise ValueError(f"unknown executor {name!r}; use local, kubernetes or docker")
    # Checked here too: not every caller has checked first (tests, `tre demo`).
    check_executor_settings(settings, name)
    if name == "local":
        from tre.executors.local import LocalExecutor

        return LocalExecutor(settings)
    if name == "kubernetes":
        from tre.executors.kubernetes import KubernetesExecutor

        # Cluster settings (kubeconfig or in-cluster, namespaces, GPU pool) come from TRE_K8S_*.
        return KubernetesExecutor()
    from tre.executors.docker import DockerExecutor

    return DockerExecutor.from_settings(settings)
