"""The admission policies hold against a compromised worker (issue 18, items 3, 4 and 6).

Every bypass the review found is a negative case in k8s/e2e/negative/ (a JSON patch over a
manifest the executor generates, k8s/e2e/manifests/); the e2e script creates each of them
with the worker's identity on a real cluster, and here the project's CEL harness
(tests/k8s/celharness.py, cel-python) evaluates the same objects. No cluster is available
where these tests run, so the harness stands in for the API server's admission chain.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.k8s import e2e_bases
from tests.k8s.celharness import (
    JOB_CONTROLLER,
    PROJECT_NAMESPACE,
    WORKER,
    admission_failures,
    admit,
    params,
    policy,
)
from tre.executors.kubernetes.config import KubernetesSettings

NEGATIVE = sorted(e2e_bases.NEGATIVE.glob("*.json"))
ADMIN = "kubernetes-admin"


def base(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((e2e_bases.BASES / name).read_text()))


def controller_pod(job: dict[str, Any]) -> dict[str, Any]:
    """The pod the Job controller creates, after mutating admission added default tolerations."""
    tmpl = copy.deepcopy(job["spec"]["template"])
    spec = tmpl["spec"]
    spec["tolerations"] = spec.get("tolerations", []) + [
        {"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": job["metadata"]["name"] + "-x7k2p",
            "namespace": job["metadata"]["namespace"],
            "labels": tmpl["metadata"]["labels"],
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job["metadata"]["name"],
                    "uid": e2e_bases.JOB_UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def with_code(job: dict[str, Any]) -> dict[str, Any]:
    """The shape the code-submission work adds: fetch-code init container, read-only /code."""
    job = copy.deepcopy(job)
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    pod["volumes"].append({"name": "code", "emptyDir": {"sizeLimit": "64Mi"}})
    c["volumeMounts"].append({"name": "code", "mountPath": "/code", "readOnly": True})
    amounts = {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"}
    pod["initContainers"] = [
        {
            "name": "fetch-code",
            "image": params()["data"]["code-image"],
            "command": ["tre", "fetch-code", "/code"],
            "resources": {"requests": dict(amounts), "limits": dict(amounts)},
            "securityContext": dict(c["securityContext"]),
            "volumeMounts": [{"name": "code", "mountPath": "/code"}, {"name": "tmp", "mountPath": "/tmp"}],
        }
    ]
    return job


# --- what the executor sends is admitted ----------------------------------------------


def test_the_e2e_bases_are_what_the_executor_generates() -> None:
    for name, obj in e2e_bases.bases().items():
        on_disk = (e2e_bases.BASES / name).read_text()
        assert on_disk == e2e_bases.render(obj), f"{name} is stale: run python -m tests.k8s.e2e_bases"


@pytest.mark.parametrize("name", ["job.yaml", "gpu-job.yaml", "collector-pod.yaml", "output-pvc.yaml"])
def test_generated_objects_are_admitted(name: str) -> None:
    verdict = admit(base(name))
    assert verdict.matched and verdict.allowed, verdict.denials


@pytest.mark.parametrize("name", ["job.yaml", "gpu-job.yaml"])
def test_the_job_controllers_pod_is_admitted(name: str) -> None:
    verdict = admit(controller_pod(base(name)), username=JOB_CONTROLLER)
    assert verdict.matched == ["tre-job-pods"] and verdict.allowed, verdict.denials


@pytest.mark.parametrize(
    "priority",
    [{"priority": 0}, {"priorityClassName": "tre-default", "priority": 1000, "preemptionPolicy": "Never"}],
)
def test_pods_as_the_priority_plugin_leaves_them_are_admitted(priority: dict[str, Any]) -> None:
    """Without or with a global default PriorityClass the plugin fills these in before validation."""
    pod = controller_pod(base("job.yaml"))
    pod["spec"].update(priority)
    assert admit(pod, username=JOB_CONTROLLER).allowed
    collector = base("collector-pod.yaml")
    collector["spec"].update(priority)
    assert admit(collector).allowed


def test_the_code_init_container_and_read_only_code_volume_are_admitted() -> None:
    job = with_code(base("job.yaml"))
    assert admit(job).allowed, admit(job).denials
    assert admit(controller_pod(job), username=JOB_CONTROLLER).allowed


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_namespace_objects_are_admitted_as_created_and_as_patched(operation: str) -> None:
    for name in (
        "namespace.yaml",
        "networkpolicy.yaml",
        "quota.yaml",
        "limitrange.yaml",
        "serviceaccount.yaml",
        "rolebinding.yaml",
    ):
        verdict = admit(base(name), operation=operation)
        assert verdict.matched == ["tre-project-namespaces"] and verdict.allowed, (name, verdict.denials)


def test_the_worker_deletes_its_output_claims_and_admins_their_datasets() -> None:
    assert admit(None, "DELETE", old=base("output-pvc.yaml")).allowed
    admin = admit(None, "DELETE", username=ADMIN, old=base("dataset-pvc.yaml"))
    assert admin.matched == [] and admin.allowed


def test_admission_params_match_the_executor_defaults() -> None:
    """The quota and images the policies pin are the ones the worker's settings produce."""
    s = KubernetesSettings()
    data = params()["data"]
    assert data["collector-image"] == s.collector_image
    assert (data["gpu-taint-key"], {data["pool-label"]: data["gpu-pool"]}) == (
        s.gpu_taint_key,
        s.gpu_node_selector,
    )
    assert (data["quota-cpu"], data["quota-memory"], int(data["quota-gpu"])) == (
        s.quota_cpu,
        s.quota_memory,
        s.quota_gpu,
    )
    assert (data["quota-storage"], int(data["quota-jobs"]), int(data["quota-pvcs"])) == (
        s.quota_storage,
        s.quota_jobs,
        s.quota_pvcs,
    )
    assert int(data["max-job-deadline-seconds"]) >= 86400 and s.ttl_after_finished_s <= int(
        data["max-ttl-seconds"]
    )
    assert s.collector_timeout_s <= int(data["max-helper-deadline-seconds"])
    worker = yaml.safe_load_all((e2e_bases.ROOT / "k8s" / "base" / "worker.yaml").read_text())
    image = next(d for d in worker if d)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert data["code-image"] == image


# --- every bypass from the review is denied --------------------------------------------


@pytest.mark.parametrize("case", NEGATIVE, ids=[p.stem for p in NEGATIVE])
def test_negative_case_is_denied(case: Path) -> None:
    doc = json.loads(case.read_text())
    obj = jsonpatch.apply_patch(base(doc["base"]), doc["patch"])
    assert doc["as"] == "worker"
    namespace = PROJECT_NAMESPACE
    if "namespace_labels" in doc:
        namespace = {"kind": "Namespace", "metadata": {"name": obj["metadata"]["namespace"]}}
        namespace["metadata"]["labels"] = doc["namespace_labels"]
    if doc["operation"] == "DELETE":
        verdict = admit(None, "DELETE", username=WORKER, old=obj, namespace=namespace)
    else:
        verdict = admit(obj, doc["operation"], username=WORKER, namespace=namespace)
    assert doc["expect_denied_by"] in verdict.matched, verdict.matched
    assert any(p == doc["expect_denied_by"] for p, _ in verdict.denials), (doc["bypass"], verdict)
    # ... and the unpatched base is admitted, so the patch is what the policy caught.
    if doc["operation"] != "DELETE":
        assert admit(base(doc["base"]), doc["operation"]).allowed


def test_every_bypass_in_the_issue_has_a_negative_case() -> None:
    bypasses = " ".join(json.loads(p.read_text())["bypass"] for p in NEGATIVE)
    for words in (
        "writable csi",
        "generic ephemeral",
        "secret volume",
        "projected service-account token",
        "volumeName",
        "dataSource",
        "nodeName",
        "claiming a Job owner",
        "1,000 GPUs",
        "MIG",
        "deleting a dataset claim",
        "kube-system",
        "deadline of 30 years",
        "secretKeyRef",
        "envFrom",
        "imagePullSecrets",
        "without the project label",
        "named tre-collect-*",
        "system-node-critical",
        "ServiceAccount carrying imagePullSecrets",
    ):
        assert words in bypasses, words


def test_a_worker_made_pod_is_not_taken_for_the_job_controllers() -> None:
    """The fake-owner pod passes if the request comes from the job controller, not from the worker."""
    pod = controller_pod(base("job.yaml"))
    assert admit(pod, username=JOB_CONTROLLER).allowed
    denied = admit(pod, username=WORKER)
    assert any("created by the Job controller" in msg for _, msg in denied.denials)


def test_missing_params_deny_everything() -> None:
    """parameterNotFoundAction: Deny on the API server; here: an empty ConfigMap fails every pinned rule."""
    empty = {"data": {}}
    assert admission_failures(policy("tre-job-pods"), base("job.yaml"), param=empty)
    assert admission_failures(policy("tre-project-namespaces"), base("quota.yaml"), param=empty)
    for doc in yaml.safe_load_all((e2e_bases.ROOT / "k8s" / "base" / "admission-policy.yaml").read_text()):
        if (
            doc["kind"] == "ValidatingAdmissionPolicyBinding"
            and "paramKind" in policy(doc["spec"]["policyName"])["spec"]
        ):
            assert doc["spec"]["paramRef"]["parameterNotFoundAction"] == "Deny"


# --- exec: the worker's pods/exec right reaches only its collector pods ------------------


def exec_options(container: str, **flags: bool) -> dict[str, Any]:
    """The PodExecOptions of a CONNECT request, as the API server hands it to admission."""
    return {
        "kind": "PodExecOptions",
        "apiVersion": "v1",
        "metadata": {"namespace": "tre-p-e2e"},
        "container": container,
        "command": ["python3", "-I", "-c", "..."],
        "stdout": True,
        "stderr": True,
        **flags,
    }


def test_the_worker_may_exec_into_its_collector_only() -> None:
    """RBAC grants pods/exec on every pod of a project namespace; the policy narrows it to the
    collector container of a tre-collect-* pod, output only: a job pod (dataset mounted) is refused."""
    collector = base("collector-pod.yaml")["metadata"]["name"]
    ok = admit(exec_options("collector"), "CONNECT", name=collector)
    assert ok.matched == ["tre-worker-exec"] and ok.allowed, ok.denials
    job_pod = controller_pod(base("job.yaml"))["metadata"]["name"]
    for name, options in (
        (job_pod, exec_options("job")),
        (job_pod, exec_options("collector")),
        (collector, exec_options("job")),
        (collector, exec_options("collector", stdin=True)),
        (collector, exec_options("collector", tty=True)),
    ):
        verdict = admit(options, "CONNECT", name=name)
        assert verdict.matched == ["tre-worker-exec"] and not verdict.allowed, (name, options)
    for kind in ("PodAttachOptions", "PodPortForwardOptions"):
        verdict = admit({**exec_options("collector"), "kind": kind}, "CONNECT", name=collector)
        assert verdict.matched == ["tre-worker-exec"] and not verdict.allowed, kind
    # The options may reach admission without type fields: the subresource decides.
    bare = {k: v for k, v in exec_options("collector").items() if k not in ("kind", "apiVersion")}
    verdict = admit(bare, "CONNECT", name=collector, kind="PodExecOptions")
    assert verdict.allowed, verdict.denials
    # An administrator debugging a job is not the worker: the policy does not apply.
    assert admit(exec_options("job"), "CONNECT", username=ADMIN, name=job_pod).matched == []


# --- RBAC: least privilege of the worker's roles -----------------------------------------

RBAC_FILE = e2e_bases.ROOT / "k8s" / "base" / "rbac.yaml"
# Every right the worker holds, (group, resource, verb) -> resourceNames (None: any name).
# A new right fails this test until it is added here and its admission guard is in place.
WORKER_RIGHTS: dict[str, dict[tuple[str, str, str], tuple[str, ...] | None]] = {
    "tre-job-runner": {
        **{("batch", "jobs", v): None for v in ("create", "get", "list", "watch", "delete")},
        **{("", "pods", v): None for v in ("create", "get", "list", "watch", "delete")},
        ("", "pods/log", "get"): None,
        ("", "pods/exec", "create"): None,  # narrowed to collectors by tre-worker-exec
        ("", "pods/exec", "get"): None,
        **{("", "persistentvolumeclaims", v): None for v in ("create", "get", "delete")},
        **{("networking.k8s.io", "networkpolicies", v): None for v in ("create", "get", "patch")},
    },
    "tre-namespace-provisioner": {
        **{("", "namespaces", v): None for v in ("create", "get", "patch")},
        **{
            ("", r, v): None
            for r in ("resourcequotas", "limitranges", "serviceaccounts")
            for v in ("create", "get", "patch")
        },
        **{("networking.k8s.io", "networkpolicies", v): None for v in ("create", "get", "patch")},
        **{("rbac.authorization.k8s.io", "rolebindings", v): None for v in ("create", "get", "patch")},
        ("rbac.authorization.k8s.io", "clusterroles", "bind"): ("tre-job-runner",),
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings", "get"): (
            "tre-job-pods",
            "tre-worker-claims",
            "tre-project-namespaces",
            "tre-worker-exec",
        ),
    },
}


def test_the_workers_roles_grant_exactly_the_reviewed_rights() -> None:
    """No wildcard, no Secrets or ConfigMaps, no escalate/impersonate, no update of pods or
    Jobs (a running pod's image is mutable), and `bind` only on tre-job-runner."""
    roles = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(RBAC_FILE.read_text())
        if d and d["kind"] == "ClusterRole"
    }
    assert set(roles) == set(WORKER_RIGHTS)
    for name, role in roles.items():
        granted: dict[tuple[str, str, str], tuple[str, ...] | None] = {}
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule, name
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        assert "*" not in (g, r, v), (name, rule)
                        names = rule.get("resourceNames")
                        granted[(g, r, v)] = tuple(sorted(names)) if names else None
        want = {k: (tuple(sorted(v)) if v else None) for k, v in WORKER_RIGHTS[name].items()}
        assert granted == want, (name, set(granted) ^ set(want))
    for doc in yaml.safe_load_all(RBAC_FILE.read_text()):
        if doc and doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert doc["roleRef"]["name"] in WORKER_RIGHTS


# --- updates of a running pod ----------------------------------------------------------


def test_a_running_pods_image_and_tolerations_cannot_be_changed() -> None:
    """A pod's container images (and tolerations, additions only) stay mutable after creation,
    and tre-job-pods checks pods on CREATE only: anyone allowed to patch pods in a project
    namespace (an operator's `edit` binding) could swap a running job's image for an unpinned
    one, or let it tolerate the GPU taint. tre-pod-updates pins both, for every user."""
    old = controller_pod(base("job.yaml"))
    old["metadata"]["finalizers"] = ["batch.kubernetes.io/job-tracking"]
    for mutate in (
        lambda p: p["spec"]["containers"][0].update(image="docker.io/library/python:latest"),
        lambda p: p["spec"]["tolerations"].append({"key": "nvidia.com/gpu", "operator": "Exists"}),
        lambda p: p["spec"].update(initContainers=[{"name": "x", "image": "busybox"}]),
    ):
        new = copy.deepcopy(old)
        mutate(new)
        for user in (JOB_CONTROLLER, WORKER, ADMIN):
            verdict = admit(new, "UPDATE", username=user, old=old)
            assert "tre-pod-updates" in verdict.matched and not verdict.allowed, (user, verdict)
    # What controllers do to a running pod stays allowed: the job controller removes its
    # tracking finalizer, someone labels it, the deadline is shortened.
    for mutate in (
        lambda p: p["metadata"].update(finalizers=[]),
        lambda p: p["metadata"]["labels"].update(debug="1"),
        lambda p: p["spec"].update(activeDeadlineSeconds=60),
    ):
        new = copy.deepcopy(old)
        mutate(new)
        verdict = admit(new, "UPDATE", username=JOB_CONTROLLER, old=old)
        assert verdict.matched == ["tre-pod-updates"] and verdict.allowed, verdict.denials
