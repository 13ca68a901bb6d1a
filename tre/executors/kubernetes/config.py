"""Cluster-side knobs of the Kubernetes executor, and how the official client is configured.

Kept apart from `tre.config.Settings` because these describe one cluster's layout (GPU pool
labels, storage class, quota sizes), which an operator sets once per deployment through
``TRE_K8S_*`` variables, while the platform settings describe the TRE itself.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.utils import parse_quantity
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tre.config import load_settings
from tre.executors.base import ExecutorError

# The output collector needs a Python interpreter and nothing else: the packer travels as
# source in the exec command (collect.py). Distroless Python, the CPU job image's own base,
# pinned by the digest sandbox_images/Dockerfile.cpu uses; operators may re-pin it.
_DISTROLESS_PYTHON_DIGEST = "sha256:7d1042ce588ab97019fe95c24ffca7bc5a82ccdac572511d5e09bda4435c89c5"
DEFAULT_COLLECTOR_IMAGE = f"gcr.io/distroless/python3-debian12:nonroot@{_DISTROLESS_PYTHON_DIGEST}"
# The code fetcher (`python3 -I -m tre.code.fetch`) needs the `tre` package: the control
# plane's own image, pinned with it (code-image in k8s/base/admission-params.yaml).
DEFAULT_CODE_IMAGE = "ghcr.io/tre-project/tre@sha256:" + "0" * 64


class KubernetesSettings(BaseSettings):
    """Where and how job pods run; every field has a safe default for a single GPU pool."""

    model_config = SettingsConfigDict(env_prefix="TRE_K8S_", extra="ignore")

    kubeconfig: Path | None = Field(
        default=None, description="Kubeconfig file; default in-cluster, then ~/.kube/config."
    )
    context: str | None = None
    namespace_prefix: str = "tre-p-"
    # Who runs jobs: the worker's own service account, bound to the ClusterRole
    # tre-job-runner in each project namespace (k8s/base/rbac.yaml).
    controller_service_account: str = "tre-controller"
    controller_namespace: str = "tre-system"
    job_runner_cluster_role: str = "tre-job-runner"
    # False when namespaces are provisioned out of band (then the worker needs no
    # cluster-scoped rights at all; k8s/base/rbac.yaml tre-namespace-provisioner can go).
    manage_namespaces: bool = True
    # Provision namespaces only if the admission policy bindings exist (docs/deploy.md).
    require_admission_policies: bool = True
    job_uid: int = 10001
    job_gid: int = 10001
    # supplementalGroupsPolicy: Strict on every pod: the groups are runAsGroup, fsGroup and
    # nothing else. Without it (Merge, the API's default) the container runtime adds every
    # group the image's own /etc/group lists the job uid in, so an image decides its job's
    # groups (redteam round 14). Off by default only because the supported floor cannot
    # honour it: the field exists from Kubernetes 1.31 (1.33 enables it), and job nodes need
    # containerd 2.0+ or CRI-O 1.31+, else the kubelet refuses every pod (the node set-up in
    # k8s/node/README.md is containerd 1.7). Turn it on where nodes support it.
    strict_supplemental_groups: bool = False
    # Nodes carrying GPUs: label selector plus the taint that keeps other pods off them.
    gpu_node_selector: dict[str, str] = Field(default_factory=lambda: {"tre.io/pool": "gpu"})
    gpu_taint_key: str = "nvidia.com/gpu"
    cpu_node_selector: dict[str, str] = Field(default_factory=dict)
    # Sandboxed runtime when the policy names none; None means plain runc (fails CKV_TRE_1).
    default_runtime_class: str | None = "gvisor"
    # Kata gives a container no GPU without VFIO passthrough set up on the node
    # (k8s/node/README.md); GPU jobs on kata are refused unless the operator says it is.
    kata_gpu_passthrough: bool = False
    storage_class: str | None = None
    collector_image: str = DEFAULT_COLLECTOR_IMAGE
    collector_timeout_s: int = 600
    ttl_after_finished_s: int = 86400
    tmp_size_mb: int = 256
    # The researcher's code: a read-only claim in every project namespace onto the control
    # plane's code store ($TRE_HOME/code, ReadOnlyMany), from which a job's `fetch-code` init
    # container (code_image) gets exactly its archive (by subPath) and unpacks it into an
    # emptyDir of code_volume_mb. The claim name is pinned by code-claim in the admission params.
    code_claim_name: str = "tre-code"
    code_image: str = DEFAULT_CODE_IMAGE
    code_volume_mb: int = 1024
    # Earlier jobs' outputs (JobSpec.inputs): a read-only claim in every project namespace onto
    # the control plane's jobs folder ($TRE_HOME/jobs, ReadOnlyMany, where collected outputs
    # live), from which the job container mounts each input job's ``<id>/output`` by subPath,
    # read-only, at /inputs/<id>. The name is pinned by inputs-claim in the admission params.
    inputs_claim_name: str = "tre-job-outputs"
    ephemeral_storage_mb: int = 1024
    log_limit_mb: int = 64
    watch_window_s: int = 5
    # Base back-off between retries of transient API errors (429, 5xx, connection).
    retry_backoff_s: float = 2.0
    # Extra seconds past activeDeadlineSeconds before the executor gives up on the cluster.
    deadline_grace_s: int = 120
    # Namespace-wide ceilings (ResourceQuota) for one project.
    quota_cpu: str = "32"
    quota_memory: str = "128Gi"
    quota_gpu: int = Field(default=4, ge=0)
    quota_ephemeral_storage: str = "100Gi"
    quota_storage: str = "500Gi"
    quota_jobs: int = Field(default=16, ge=1)
    quota_pvcs: int = Field(default=64, ge=1)

    @field_validator("quota_cpu", "quota_memory", "quota_ephemeral_storage", "quota_storage")
    @classmethod
    def _quantity(cls, value: str) -> str:
        """A Kubernetes quantity (``32``, ``500m``, ``128Gi``), checked at start: a typo such as
        ``128GB`` would otherwise pass until the API server refused the first project's quota."""
        try:
            amount = parse_quantity(value)
        except ValueError:
            raise ValueError("not a Kubernetes quantity (such as 32, 500m or 128Gi)") from None
        if amount <= 0:
            raise ValueError("must be more than zero")
        return value


def load_kubernetes_settings() -> KubernetesSettings:
    """The ``TRE_K8S_*`` settings; a bad value stops the worker at start with its name
    (`tre.config.SettingsError`), not when the first job reaches the cluster."""
    return load_settings(KubernetesSettings, "TRE_K8S_")


def load_api_client(settings: KubernetesSettings) -> k8s_client.ApiClient:
    """An `ApiClient` from the configured kubeconfig, else in-cluster, else the default file.

    Returns a private client (not the global default) so two executors with different
    clusters, or tests with a fake server, never share configuration.
    """
    configuration = k8s_client.Configuration()
    try:
        if settings.kubeconfig is not None:
            k8s_config.load_kube_config(
                config_file=str(settings.kubeconfig),
                context=settings.context,
                client_configuration=configuration,
            )
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(context=settings.context, client_configuration=configuration)
    except (k8s_config.ConfigException, OSError) as exc:
        raise ExecutorError(
            f"no Kubernetes configuration: not in a cluster and no usable kubeconfig ({exc}); "
            "set TRE_K8S_KUBECONFIG"
        ) from exc
    return k8s_client.ApiClient(configuration)
