"""Pure functions from a `JobSpec` to the Kubernetes objects that run it.

Every object is a plain dict in the API's own JSON shape, so the very same value is sent to
the cluster, written out as YAML for `kubernetes-validate` and `checkov` in the tests, and
compared against the ValidatingAdmissionPolicy in ``k8s/base``. No object here needs the
cluster to exist; the executor only sends them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from kubernetes.utils import parse_quantity

from tre.executors.base import JobSpec
from tre.executors.kubernetes.config import KubernetesSettings

Manifest = dict[str, Any]

MANAGED_BY = {"app.kubernetes.io/managed-by": "tre"}
JOB_SERVICE_ACCOUNT = "tre-job"
OUTPUT_MOUNT = "/output"
CODE_MOUNT = "/code"
CODE_ARCHIVE_MOUNT = "/code-archive/code.tar.gz"
INPUTS_ROOT = "/inputs"
INPUTS_VOLUME = "job-inputs"
# A private memory-backed emptyDir inside the pod, not the host's /tmp.
TMP_MOUNT = "/tmp"  # noqa: S108
# The ValidatingAdmissionPolicyBindings (k8s/base/admission-policy.yaml) the worker's
# rights are only safe with; the executor checks they exist before provisioning.
ADMISSION_POLICY_BINDINGS = ("tre-job-pods", "tre-worker-claims", "tre-project-namespaces", "tre-worker-exec")
LABEL_JOB = "tre.io/job-id"
LABEL_PROJECT = "tre.io/project-id"
LABEL_COMPONENT = "app.kubernetes.io/component"
GPU_RESOURCE = "nvidia.com/gpu"
# MIG slices are separate extended resources; no job may request them (the tre-job-pods
# policy admits cpu, memory, ephemeral-storage and nvidia.com/gpu only), and the quota pins
# the common profiles to zero as well, for a cluster where the policy is not installed yet.
MIG_PROFILES = (
    "1g.5gb",
    "1g.10gb",
    "1g.12gb",
    "1g.18gb",
    "1g.20gb",
    "1g.23gb",
    "1g.24gb",
    "1g.35gb",
    "1g.45gb",
    "2g.10gb",
    "2g.20gb",
    "2g.24gb",
    "2g.35gb",
    "2g.45gb",
    "3g.20gb",
    "3g.40gb",
    "3g.47gb",
    "3g.71gb",
    "3g.90gb",
    "4g.20gb",
    "4g.40gb",
    "4g.47gb",
    "4g.71gb",
    "4g.94gb",
    "7g.40gb",
    "7g.80gb",
    "7g.94gb",
    "7g.141gb",
)

_INVALID = re.compile(r"[^a-z0-9-]+")


def dns_label(value: str, *, prefix: str = "", max_len: int = 63) -> str:
    """A DNS-1123 label from arbitrary ids; long or lossy ones get a hash suffix to stay unique."""
    cleaned = _INVALID.sub("-", value.lower()).strip("-") or "x"
    name = f"{prefix}{cleaned}"
    if len(name) > max_len or cleaned != value:
        digest = hashlib.sha256(value.encode()).hexdigest()[:8]
        name = f"{name[: max_len - 9].rstrip('-')}-{digest}"
    return name


def namespace_name(project_id: str, settings: KubernetesSettings) -> str:
    return dns_label(project_id, prefix=settings.namespace_prefix)


def job_name(job_id: str) -> str:
    return dns_label(job_id, prefix="tre-job-")


def dataset_pvc_name(dataset_id: str) -> str:
    """The PVC a dataset is provisioned as in every project namespace (ids may not be DNS-safe)."""
    return dns_label(dataset_id, prefix="dataset-")


def with_dataset_pvcs(spec: JobSpec) -> JobSpec:
    """Fill in the conventional PVC name of each dataset the worker did not name one for."""
    mounts = [m if m.pvc_name else replace(m, pvc_name=dataset_pvc_name(m.dataset_id)) for m in spec.datasets]
    return replace(spec, datasets=mounts)


def job_label(job_id: str) -> str:
    """The job's `tre.io/job-id` label value; short enough that `tre-out-<label>` is a valid name."""
    return dns_label(job_id, max_len=55)


def output_pvc_name(job_id: str) -> str:
    """`tre-out-<job label>`: the admission policy admits a writable claim only by this name."""
    return f"tre-out-{job_label(job_id)}"


def collector_pod_name(job_id: str) -> str:
    return dns_label(job_id, prefix="tre-collect-")


def _labels(spec: JobSpec, component: str) -> dict[str, str]:
    return {
        **MANAGED_BY,
        LABEL_COMPONENT: component,
        LABEL_JOB: job_label(spec.job_id),
        LABEL_PROJECT: dns_label(spec.project_id),
    }


def _meta(name: str, namespace: str, labels: dict[str, str]) -> Manifest:
    return {"name": name, "namespace": namespace, "labels": labels}


def require_digest(image: str) -> str:
    """Refuse images not pinned by digest: a tag can be re-pointed after the DAC approved it."""
    if not re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", image):
        raise ValueError(f"image must be pinned by digest (name@sha256:<64 hex>), got {image!r}")
    return image


# --- project namespace -------------------------------------------------------------------


def project_namespace(project_id: str, settings: KubernetesSettings) -> Manifest:
    """The namespace, with Pod Security 'restricted' enforced (and audited, warned) by the API server."""
    labels = {
        **MANAGED_BY,
        LABEL_PROJECT: dns_label(project_id),
        "tre.io/project-namespace": "true",
    }
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        labels[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace_name(project_id, settings), "labels": labels},
    }


def default_deny_network_policy(namespace: str) -> Manifest:
    """Deny every ingress and egress, DNS included: jobs read mounted data and write /output only."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny-all", "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []},
    }


def resource_quota(namespace: str, settings: KubernetesSettings) -> Manifest:
    """Ceilings for the whole project, so one project cannot starve the GPU pool."""
    hard = {
        "requests.cpu": settings.quota_cpu,
        "limits.cpu": settings.quota_cpu,
        "requests.memory": settings.quota_memory,
        "limits.memory": settings.quota_memory,
        f"requests.{GPU_RESOURCE}": str(settings.quota_gpu),
        "requests.ephemeral-storage": settings.quota_ephemeral_storage,
        "limits.ephemeral-storage": settings.quota_ephemeral_storage,
        "requests.storage": settings.quota_storage,
        "persistentvolumeclaims": str(settings.quota_pvcs),
        "count/jobs.batch": str(settings.quota_jobs),
        "pods": str(settings.quota_jobs * 2),
        "services": "0",
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }
    hard.update({f"requests.nvidia.com/mig-{p}": "0" for p in MIG_PROFILES})
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "tre-project-quota", "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {"hard": hard},
    }


def limit_range(namespace: str, settings: KubernetesSettings) -> Manifest:
    """Defaults for anything created without resources, and a per-container maximum."""
    small = {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "256Mi"}
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "tre-limits", "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": dict(small),
                    "defaultRequest": dict(small),
                    "max": {
                        "cpu": settings.quota_cpu,
                        "memory": settings.quota_memory,
                        "ephemeral-storage": settings.quota_ephemeral_storage,
                    },
                },
                {"type": "PersistentVolumeClaim", "max": {"storage": settings.quota_storage}},
            ]
        },
    }


def job_service_account(namespace: str) -> Manifest:
    """The identity job pods run as: no token mounted and, by construction, no role bindings."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": JOB_SERVICE_ACCOUNT, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "automountServiceAccountToken": False,
    }


def job_runner_binding(namespace: str, settings: KubernetesSettings) -> Manifest:
    """Grants the worker (and only it) the tre-job-runner ClusterRole inside this namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tre-job-runner", "namespace": namespace, "labels": dict(MANAGED_BY)},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": settings.job_runner_cluster_role,
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": settings.controller_service_account,
                "namespace": settings.controller_namespace,
            }
        ],
    }


def namespace_objects(project_id: str, settings: KubernetesSettings) -> list[Manifest]:
    """Everything a project namespace holds before its first job, in creation order."""
    ns = namespace_name(project_id, settings)
    return [
        project_namespace(project_id, settings),
        default_deny_network_policy(ns),
        resource_quota(ns, settings),
        limit_range(ns, settings),
        job_service_account(ns),
        job_runner_binding(ns, settings),
    ]


# --- one job -----------------------------------------------------------------------------


def owned_by(owner: Manifest) -> list[Manifest]:
    """An owner reference to the Job: when the Job goes (deleted, or its TTL), the garbage
    collector removes the object too. Not a controller reference, and not blocking the
    owner's deletion (that would need a right on jobs/finalizers)."""
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "blockOwnerDeletion": False,
        }
    ]


def output_pvc(spec: JobSpec, settings: KubernetesSettings, owner: Manifest | None = None) -> Manifest:
    """A claim sized to the job's output limit; owned by the Job so the cluster cleans it up too."""
    ns = namespace_name(spec.project_id, settings)
    meta = _meta(output_pvc_name(spec.job_id), ns, _labels(spec, "output"))
    if owner is not None:
        meta["ownerReferences"] = owned_by(owner)
    pvc_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{spec.output_limit_mb}Mi"}},
    }
    if settings.storage_class:
        pvc_spec["storageClassName"] = settings.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": pvc_spec}


def _pod_security_context(settings: KubernetesSettings) -> Manifest:
    """The pod's identity: the job uid and gid whatever the image says, and (Strict) no
    supplementary group taken from the image's /etc/group (`KubernetesSettings.
    strict_supplemental_groups` says why)."""
    context: Manifest = {
        "runAsNonRoot": True,
        "runAsUser": settings.job_uid,
        "runAsGroup": settings.job_gid,
        "fsGroup": settings.job_gid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if settings.strict_supplemental_groups:
        context["supplementalGroupsPolicy"] = "Strict"
    return context


def _container_security_context(settings: KubernetesSettings) -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.job_uid,
        "runAsGroup": settings.job_gid,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(spec: JobSpec, settings: KubernetesSettings) -> Manifest:
    """Requests equal limits (Guaranteed QoS): no overcommit next to patient data."""
    amounts: dict[str, str] = {
        "cpu": f"{int(round(spec.cpu * 1000))}m",
        "memory": f"{spec.memory_mb}Mi",
        "ephemeral-storage": f"{settings.ephemeral_storage_mb}Mi",
    }
    if spec.gpu > 0:
        amounts[GPU_RESOURCE] = str(spec.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def over_quota(spec: JobSpec, settings: KubernetesSettings) -> list[str]:
    """What the job asks for beyond what one project namespace may ever give it.

    The ResourceQuota and the LimitRange's per-container maxima (both the ``quota_*``
    settings) refuse such a pod, but only when the Job controller creates it: the Job is
    accepted, its pod refused on every retry (FailedCreate, an event the executor does not
    follow), and the job would sit for its whole time limit. Checked before anything is
    created instead; the words are fixed, the numbers the operator's maxima.
    """
    maxima = {
        "cpu": settings.quota_cpu,
        "memory": settings.quota_memory,
        "ephemeral-storage": settings.quota_ephemeral_storage,
        GPU_RESOURCE: str(settings.quota_gpu),
    }
    asked = _resources(spec, settings)["limits"]
    over = [
        f"{name} (at most {maxima[name]})"
        for name, amount in asked.items()
        if parse_quantity(amount) > parse_quantity(maxima[name])
    ]
    if parse_quantity(f"{spec.output_limit_mb}Mi") > parse_quantity(settings.quota_storage):
        over.append(f"storage for /output (at most {settings.quota_storage})")
    return over


def _placement(spec: JobSpec, settings: KubernetesSettings) -> Manifest:
    if spec.gpu > 0:
        return {
            "nodeSelector": dict(settings.gpu_node_selector),
            "tolerations": [{"key": settings.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}],
        }
    return {"nodeSelector": dict(settings.cpu_node_selector)} if settings.cpu_node_selector else {}


def code_init(code_hash: str, settings: KubernetesSettings) -> tuple[Manifest, list[Manifest], Manifest]:
    """The init container that puts the job's code at /code, its volumes, and the job's mount.

    The pod has no network (deny-all NetworkPolicy; the namespace admission policy lets the
    worker write no other kind), so the code comes by volume: the read-only ``code-archive``
    claim onto the control plane's code store, mounted by subPath so that ``fetch-code`` sees
    only this job's archive (the admission policy requires both, and keeps the claim out of
    the job container). It re-hashes the archive, refuses it unless the SHA-256 matches, and
    unpacks it with the control plane's own checks (``python3 -I -m tre.code.fetch`` in the
    control plane's image) into the ``code`` emptyDir (with a sizeLimit), whose ``tree``
    folder the job container mounts read-only at /code, its working directory.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", code_hash):
        raise ValueError(f"code hash must be a SHA-256 (64 lowercase hex digits), got {code_hash!r}")
    amounts = {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "64Mi"}
    init: Manifest = {
        "name": "fetch-code",
        "image": require_digest(settings.code_image),
        "imagePullPolicy": "Always",
        "command": [
            "python3",
            "-I",
            "-m",
            "tre.code.fetch",
            "--sha256",
            code_hash,
            "--archive",
            CODE_ARCHIVE_MOUNT,
            "--into",
            f"{CODE_MOUNT}/tree",
            "--max-mb",
            str(settings.code_volume_mb),
        ],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "securityContext": _container_security_context(settings),
        "volumeMounts": [
            {
                "name": "code-archive",
                "mountPath": CODE_ARCHIVE_MOUNT,
                "subPath": f"archives/{code_hash}.tar.gz",
                "readOnly": True,
            },
            {"name": "code", "mountPath": CODE_MOUNT},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    volumes: list[Manifest] = [
        {
            "name": "code-archive",
            "persistentVolumeClaim": {"claimName": settings.code_claim_name, "readOnly": True},
        },
        {"name": "code", "emptyDir": {"sizeLimit": f"{settings.code_volume_mb}Mi"}},
    ]
    mount: Manifest = {"name": "code", "mountPath": CODE_MOUNT, "subPath": "tree", "readOnly": True}
    return init, volumes, mount


def input_volumes(spec: JobSpec, settings: KubernetesSettings) -> tuple[list[Manifest], list[Manifest]]:
    """The read-only ``job-inputs`` claim and one read-only mount per input job.

    Outputs are collected from a job's pod to the control plane (collect.py) and its output
    claim goes with the Job, so an earlier job's outputs live only in the control plane's
    jobs folder. The operator provisions a ReadOnlyMany claim onto it in each project
    namespace (like ``tre-code``); the job container mounts exactly ``<id>/output`` of each
    input job by subPath at /inputs/<id>. The admission policy admits that claim only
    read-only, only in the job container, and only by such a subPath at the matching path;
    which jobs a job may read is decided by tre's admission (same project, succeeded).
    """
    if not spec.inputs:
        return [], []
    volume: Manifest = {
        "name": INPUTS_VOLUME,
        "persistentVolumeClaim": {"claimName": settings.inputs_claim_name, "readOnly": True},
    }
    mounts: list[Manifest] = []
    for mount in spec.inputs:
        if (
            not re.fullmatch(r"[0-9a-f]{32}", mount.job_id)
            or mount.mount_path != f"{INPUTS_ROOT}/{mount.job_id}"
        ):
            raise ValueError(f"input job {mount.job_id!r} must be mounted at {INPUTS_ROOT}/<its id>")
        mounts.append(
            {
                "name": INPUTS_VOLUME,
                "mountPath": mount.mount_path,
                "subPath": f"{mount.job_id}/output",
                "readOnly": True,
            }
        )
    return [volume], mounts


# An image's declared volume becomes this: empty, memory-backed, mounted read-only.
MASK_SIZE = "4Ki"


def image_volume_masks(spec: JobSpec, mounted: set[str]) -> tuple[list[Manifest], list[Manifest]]:
    """An empty read-only emptyDir over each ``Volumes`` path of the image's config that no
    mount of ours covers exactly.

    Why (redteam round 11): containerd's CRI (and CRI-O) give every declared volume a
    writable folder on the node's disk, outside ``readOnlyRootFilesystem`` and the pod's
    ephemeral-storage accounting, unless a mount of the pod has that very path. The paths
    were checked at import (`tre.images.layout.check_volumes`); an image the TRE did not
    import (external approvals) has no config here, and the node setting
    (``ignore_image_defined_volumes``, k8s/node/README.md) covers it."""
    config = spec.image_config
    paths = sorted({str(PurePosixPath(v)) for v in (config.volumes if config else [])} - mounted)
    volumes = [
        {"name": f"mask-{i}", "emptyDir": {"medium": "Memory", "sizeLimit": MASK_SIZE}}
        for i in range(len(paths))
    ]
    mounts = [{"name": f"mask-{i}", "mountPath": path, "readOnly": True} for i, path in enumerate(paths)]
    return volumes, mounts


def job(spec: JobSpec, settings: KubernetesSettings) -> Manifest:
    """The batch/v1 Job: one attempt, a hard deadline, and a pod locked down to 'restricted' and more."""
    image = require_digest(spec.image)
    ns = namespace_name(spec.project_id, settings)
    labels = _labels(spec, "job")
    volumes: list[Manifest] = []
    mounts: list[Manifest] = []
    for i, ds in enumerate(spec.datasets):
        if not ds.pvc_name:
            raise ValueError(f"dataset {ds.dataset_id} has no PVC; the Kubernetes executor mounts PVCs only")
        vol = f"data-{i}"
        volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": ds.pvc_name, "readOnly": True}})
        mounts.append({"name": vol, "mountPath": ds.mount_path, "readOnly": True})
    volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": output_pvc_name(spec.job_id)}})
    mounts.append({"name": "output", "mountPath": OUTPUT_MOUNT})
    volumes.append(
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": f"{settings.tmp_size_mb}Mi"}}
    )
    mounts.append({"name": "tmp", "mountPath": TMP_MOUNT})
    inputs_volumes, inputs_mounts = input_volumes(spec, settings)
    volumes += inputs_volumes
    mounts += inputs_mounts

    env = {
        **spec.env,
        "HOME": TMP_MOUNT,
        "TMPDIR": TMP_MOUNT,
        "TRE_OUTPUT_DIR": OUTPUT_MOUNT,
        "TRE_JOB_ID": spec.job_id,
        # Last, so no job's env can set them back: the API server's service address.
        **MASTER_SERVICE_ENV_MASK,
    }
    init_containers: list[Manifest] = []
    if spec.code_hash:
        init, code_volumes, code_mount = code_init(spec.code_hash, settings)
        init_containers.append(init)
        volumes += code_volumes
        mounts.append(code_mount)
    mask_volumes, mask_mounts = image_volume_masks(spec, {m["mountPath"] for m in mounts})
    volumes += mask_volumes
    mounts += mask_mounts
    container: Manifest = {
        "name": "job",
        "image": image,
        "imagePullPolicy": "Always",
        # args, not command: the image's Entrypoint stays and the job's command replaces its Cmd,
        # as `docker run IMAGE CMD…`, the Docker executor and the local sandbox do (a command
        # here replaced the Entrypoint: one job ran differently per backend; review round 12).
        "args": list(spec.command),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "workingDir": CODE_MOUNT if spec.code_hash else OUTPUT_MOUNT,
        "resources": _resources(spec, settings),
        "securityContext": _container_security_context(settings),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: Manifest = {
        "serviceAccountName": JOB_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # The kubelet's /etc/resolv.conf named the cluster's DNS service address, the
        # cluster domain and the search path of the project's namespace: facts about the
        # cluster a job has no use for (it has no network; redteam round 14). Now it names
        # only the loopback address, which answers nothing.
        **JOB_DNS,
        # The pod's name (the job's id and the Job controller's random suffix) was its
        # hostname, and /etc/hosts paired it with the pod's IP (redteam round 15): one name
        # for every job, as the local sandbox (`tre-sandbox`) and Docker give.
        "hostname": JOB_HOSTNAME,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "restartPolicy": "Never",
        "securityContext": _pod_security_context(settings),
        **({"initContainers": init_containers} if init_containers else {}),
        "containers": [container],
        "volumes": volumes,
        **_placement(spec, settings),
    }
    runtime = spec.runtime_class or settings.default_runtime_class
    if runtime == "kata" and spec.gpu > 0 and not settings.kata_gpu_passthrough:
        raise ValueError(
            "GPU jobs cannot run on the kata RuntimeClass without VFIO passthrough "
            "(TRE_K8S_KATA_GPU_PASSTHROUGH; see k8s/node/README.md)"
        )
    if runtime:
        pod_spec["runtimeClassName"] = runtime
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(job_name(spec.job_id), ns, labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(spec.time_limit_s),
            "ttlSecondsAfterFinished": settings.ttl_after_finished_s,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


# A resolver configuration that tells a job nothing about the cluster (`job`).
JOB_DNS: Manifest = {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["127.0.0.1"]}}
# Every job pod's hostname (`job`): the same for all, as the other backends'.
JOB_HOSTNAME = "tre-sandbox"
# What the kubelet injects into every container whatever `enableServiceLinks` says: the
# `kubernetes` service of the `default` namespace as Docker-link variables (the API server's
# cluster IP and port; redteam round 15). A variable the container declares itself is not
# overwritten by the kubelet (it adds service variables only under names the container does
# not set), so each is declared empty. The names follow the service's port, 443 on every
# distribution we know; `k8s/node/README.md` says how to check a cluster's.
MASTER_SERVICE_ENV_MASK: dict[str, str] = dict.fromkeys(
    (
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "KUBERNETES_SERVICE_PORT_HTTPS",
        "KUBERNETES_PORT",
        "KUBERNETES_PORT_443_TCP",
        "KUBERNETES_PORT_443_TCP_PROTO",
        "KUBERNETES_PORT_443_TCP_PORT",
        "KUBERNETES_PORT_443_TCP_ADDR",
    ),
    "",
)


# How the collector runs Python: isolated (-I: no PYTHON* variables, no user site, no working
# or script directory on sys.path), without `site` (-S), from `/`. Nothing the job wrote to
# /output can then be imported (see collect.py and packer.py).
PYTHON_ISOLATED = ["python3", "-I", "-S"]


def collector_pod(spec: JobSpec, settings: KubernetesSettings, owner: Manifest | None = None) -> Manifest:
    """A short-lived pod that mounts the output PVC read-only so the executor can tar it out via exec.

    It only sleeps; the executor execs the packer in it (`collect.packer_command`). Its
    image is a minimal Python (`TRE_K8S_COLLECTOR_IMAGE`), never the job's image, and it
    never runs anything from /output. Same lockdown as the job, no GPU, and its own
    deadline so a lost worker cannot keep it running; owned by the Job (``owner``) so that a
    worker lost mid-collection does not leave the pod object behind either: a bare pod that
    ended is never garbage-collected on its own.
    """
    image = require_digest(settings.collector_image)
    ns = namespace_name(spec.project_id, settings)
    amounts = {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "64Mi"}
    probe = {"exec": {"command": [*PYTHON_ISOLATED, "-c", "pass"]}}
    container: Manifest = {
        "name": "collector",
        "image": image,
        "imagePullPolicy": "Always",
        "command": [*PYTHON_ISOLATED, "-c", f"import time; time.sleep({settings.collector_timeout_s})"],
        "workingDir": "/",
        "env": [
            {"name": "PYTHONSAFEPATH", "value": "1"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "PYTHONNOUSERSITE", "value": "1"},
        ],
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "securityContext": _container_security_context(settings),
        "volumeMounts": [
            {"name": "output", "mountPath": OUTPUT_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_MOUNT},
        ],
        "livenessProbe": {**probe, "periodSeconds": 60},
        "readinessProbe": {**probe, "periodSeconds": 5},
    }
    pod_spec: Manifest = {
        "serviceAccountName": JOB_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "restartPolicy": "Never",
        "activeDeadlineSeconds": settings.collector_timeout_s,
        "securityContext": _pod_security_context(settings),
        "containers": [container],
        "volumes": [
            {
                "name": "output",
                "persistentVolumeClaim": {"claimName": output_pvc_name(spec.job_id), "readOnly": True},
            },
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        ],
        **({"nodeSelector": dict(settings.cpu_node_selector)} if settings.cpu_node_selector else {}),
    }
    runtime = spec.runtime_class or settings.default_runtime_class
    if runtime:
        pod_spec["runtimeClassName"] = runtime
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **_meta(collector_pod_name(spec.job_id), ns, _labels(spec, "collector")),
            **({"ownerReferences": owned_by(owner)} if owner is not None else {}),
        },
        "spec": pod_spec,
    }
