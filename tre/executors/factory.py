"""Pick the executor backend named in settings (one interface, several backends)."""

from __future__ import annotations

from tre.config import Settings
from tre.executors.base import Executor


def make_executor(settings: Settings, name: str | None = None) -> Executor:
    name = name or settings.executor
    if name == "local":
        from tre.executors.local import LocalExecutor
        from tre.executors.sandbox_settings import check_local_sandbox_settings

        # A process that will run jobs here: the TRE_SANDBOX_* values are checked against the
        # host now, so a wrong one stops `tre serve`/`tre worker` at start, not the first job.
        check_local_sandbox_settings(settings)
        return LocalExecutor(settings)
    if name == "kubernetes":
        from tre.executors.kubernetes import KubernetesExecutor

        # Cluster settings (kubeconfig or in-cluster, namespaces, GPU pool) come from TRE_K8S_*.
        return KubernetesExecutor()
    if name == "docker":
        from tre.executors.docker import DockerExecutor
        from tre.executors.sandbox_settings import check_sandbox_uid_range

        check_sandbox_uid_range(settings)  # its containers take their uids from the same range
        return DockerExecutor.from_settings(settings)
    raise ValueError(f"unknown executor {name!r}; use local, kubernetes or docker")
