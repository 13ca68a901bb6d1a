"""Every manifest the executor generates, and every file under k8s/, passes
`kubernetes-validate -k 1.33.0 --strict` and checkov (with the project's CKV_TRE checks)
with zero failed checks; the admission policy's CEL accepts them and rejects weakened ones.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.celharness import JOB_CONTROLLER, admission_failures, admit, denials_after, policy
from tests.k8s.conftest import ROOT, failed_checks, kubernetes_validate, run_checkov, write_docs
from tests.k8s.kustomize_lite import normalise, render
from tre.executors.base import DatasetMount, ImageConfig, InputMount, JobSpec
from tre.executors.kubernetes import manifests as m
from tre.executors.kubernetes.config import KubernetesSettings

DIGEST = "@sha256:" + "5e" * 32
SETTINGS = KubernetesSettings(storage_class="fast-rwo")


def specs(tmp: Path) -> list[JobSpec]:
    common: dict[str, Any] = dict(output_dir=tmp / "o", log_path=tmp / "l")
    return [
        JobSpec(  # GPU job, two datasets, gVisor (nvproxy) chosen by policy
            job_id="4c1f0a9e2b7d4e8f9a0b1c2d3e4f5a6b",
            project_id="Lung_CT 2025",
            image="reg.example.org/seg" + DIGEST,
            command=["python", "-m", "seg"],
            datasets=[
                DatasetMount("lidc", pvc_name="dataset-lidc"),
                DatasetMount("nsclc", pvc_name="dataset-nsclc", mount_path="/data/nsclc"),
            ],
            gpu=2,
            cpu=8,
            memory_mb=32768,
            time_limit_s=7200,
            runtime_class="gvisor",
            env={"SEED": "1"},
            **common,
        ),
        JobSpec(  # CPU-only job on the default sandbox runtime, with the researcher's code
            job_id="j2",
            project_id="p2",
            image="reg.example.org/stats" + DIGEST,
            command=["python", "a.py"],
            datasets=[],
            cpu=0.5,
            memory_mb=512,
            code_hash="c0de" * 16,
            **common,
        ),
        JobSpec(  # CPU-only job on Kata, reading an earlier job's outputs (/inputs/<id>)
            job_id="j3",
            project_id="p2",
            image="reg.example.org/stats" + DIGEST,
            command=["python", "a.py"],
            datasets=[DatasetMount("lidc", pvc_name="dataset-lidc")],
            inputs=[InputMount("9e" * 16, tmp / "in", "/inputs/" + "9e" * 16)],
            runtime_class="kata",
            # Declared volumes (round 11): masked read-only unless a mount of ours is there.
            image_config=ImageConfig(volumes=["/var/lib/app", "/data", "/tmp/cache"]),
            **common,
        ),
    ]


def generated(tmp: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for spec in specs(tmp):
        docs += m.namespace_objects(spec.project_id, SETTINGS)
        job = m.job(spec, SETTINGS)
        docs += [
            job,
            m.output_pvc(
                spec,
                SETTINGS,
                owner={
                    "metadata": {
                        "name": job["metadata"]["name"],
                        "uid": "0b7e8a8c-2f4c-4f0e-9d8c-1a2b3c4d5e6f",
                    }
                },
            ),
            m.collector_pod(spec, SETTINGS),
        ]
    return docs


def test_job_manifest_has_the_required_controls(tmp_path: Path) -> None:
    gpu_spec, cpu_spec, _ = specs(tmp_path)
    job = m.job(gpu_spec, SETTINGS)
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 7200
    assert job["spec"]["ttlSecondsAfterFinished"] > 0 and pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["serviceAccountName"] == "tre-job" and pod["runtimeClassName"] == "gvisor"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert (
        c["securityContext"]["readOnlyRootFilesystem"]
        and not c["securityContext"]["allowPrivilegeEscalation"]
    )
    assert (
        c["resources"]["requests"]
        == c["resources"]["limits"]
        == {"cpu": "8000m", "memory": "32768Mi", "ephemeral-storage": "1024Mi", "nvidia.com/gpu": "2"}
    )
    assert pod["nodeSelector"] == {"tre.io/pool": "gpu"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    data = [v for v in pod["volumes"] if v["name"].startswith("data-")]
    assert [v["persistentVolumeClaim"] for v in data] == [
        {"claimName": "dataset-lidc", "readOnly": True},
        {"claimName": "dataset-nsclc", "readOnly": True},
    ]
    mounts = {vm["mountPath"]: vm for vm in c["volumeMounts"]}
    assert (
        mounts["/data"]["readOnly"]
        and mounts["/data/nsclc"]["readOnly"]
        and "readOnly" not in mounts["/output"]
    )
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    # CPU-only: no GPU resource, no GPU pool, default sandboxed runtime.
    cpod = m.job(cpu_spec, SETTINGS)["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpod["containers"][0]["resources"]["limits"] and "tolerations" not in cpod
    assert cpod["runtimeClassName"] == "gvisor"


def test_kata_gpu_jobs_need_vfio_passthrough(tmp_path: Path) -> None:
    """Kata with nvidia.com/gpu gives the container no GPU unless the node does VFIO passthrough."""
    spec = JobSpec(**{**specs(tmp_path)[0].__dict__, "runtime_class": "kata"})
    with pytest.raises(ValueError, match="VFIO"):
        m.job(spec, SETTINGS)
    job = m.job(spec, SETTINGS.model_copy(update={"kata_gpu_passthrough": True}))
    assert job["spec"]["template"]["spec"]["runtimeClassName"] == "kata"


def test_quota_pins_mig_slices_to_zero() -> None:
    hard = m.resource_quota("tre-p-x", SETTINGS)["spec"]["hard"]
    mig = {k: v for k, v in hard.items() if "mig-" in k}
    assert len(mig) >= 20 and set(mig.values()) == {"0"}
    assert "requests.nvidia.com/mig-1g.10gb" in mig and "requests.nvidia.com/mig-7g.80gb" in mig


def test_unpinned_image_or_hostpath_dataset_is_refused(tmp_path: Path) -> None:
    spec = specs(tmp_path)[1]
    with pytest.raises(ValueError, match="digest"):
        m.job(JobSpec(**{**spec.__dict__, "image": "reg.example.org/stats:latest"}), SETTINGS)
    with pytest.raises(ValueError, match="PVC"):
        m.job(
            JobSpec(**{**spec.__dict__, "datasets": [DatasetMount("d", host_path=Path("/srv/d"))]}), SETTINGS
        )


def test_names_are_valid_dns_labels() -> None:
    assert m.namespace_name("Lung_CT 2025", SETTINGS).startswith("tre-p-lung-ct-2025-")
    long = m.namespace_name("x" * 80, SETTINGS)
    assert len(long) <= 63 and long != m.namespace_name("x" * 81, SETTINGS)


def _base_files() -> list[Path]:
    return sorted(p for p in (ROOT / "k8s" / "base").glob("*.yaml") if p.name != "kustomization.yaml")


def test_control_plane_liveness_waits_for_a_cold_start() -> None:
    """A cold start of the control-plane image compiles every module in memory (read-only
    root, no bytecode) and migrates; measured 12-26 s under bubblewrap. Without a startup
    probe the liveness probe (3 x 20 s) could restart a slow first start in a loop."""
    checked = 0
    for f in _base_files():
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") not in ("Deployment", "StatefulSet"):
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if "livenessProbe" not in c:
                    continue
                startup = c.get("startupProbe")
                assert startup, f"{f.name}: container {c['name']} has liveness but no startupProbe"
                budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
                assert budget >= 120, f"{f.name}: {c['name']} gets {budget} s to start"
                checked += 1
    assert checked >= 2  # the API and the worker


def test_all_manifests_validate_and_pass_checkov(tmp_path: Path) -> None:
    """One checkov run over generated manifests, k8s/base and every rendered overlay
    (test_manifest_coverage.py validates them for each supported Kubernetes version)."""
    gen = write_docs(tmp_path / "scan" / "generated" / "jobs.yaml", generated(tmp_path))
    rendered = [
        write_docs(tmp_path / "scan" / "overlay" / f"{o.name}.yaml", render(o))
        for o in sorted(p.parent for p in (ROOT / "k8s" / "overlays").glob("*/kustomization.yaml"))
    ]
    assert rendered
    base_dir = tmp_path / "scan" / "base"
    base_dir.mkdir()
    for f in _base_files():
        shutil.copy(f, base_dir / f.name)
    kubernetes_validate([gen, *rendered, *sorted(base_dir.iterdir())])

    report = run_checkov(tmp_path / "scan")
    assert failed_checks(report) == []
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["resource_count"] >= 40
    passed_ids = {c["check_id"] for c in report["results"]["passed_checks"]}
    must = {
        f"CKV_K8S_{n}" for n in (10, 11, 12, 13, 16, 17, 18, 19, 20, 21, 22, 23, 28, 31, 37, 38, 40, 41, 43)
    }
    must |= {"CKV2_K8S_6", "CKV_TRE_1", "CKV_TRE_2", "CKV_TRE_3"}
    assert must <= passed_ids, sorted(must - passed_ids)
    # The only skips are the two documented CKV_K8S_35 annotations (env from a Secret).
    assert {c["check_id"] for c in report["results"]["skipped_checks"]} <= {"CKV_K8S_35"}


def test_project_checks_catch_a_weakened_job(tmp_path: Path) -> None:
    spec = specs(tmp_path)[1]
    job = m.job(spec, KubernetesSettings(default_runtime_class=None))
    del job["spec"]["activeDeadlineSeconds"]
    res = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    del res["limits"]["ephemeral-storage"]
    write_docs(
        tmp_path / "bad" / "job.yaml", [m.default_deny_network_policy(job["metadata"]["namespace"]), job]
    )
    failed = {c["check_id"] for c in run_checkov(tmp_path / "bad")["results"]["failed_checks"]}
    assert {"CKV_TRE_1", "CKV_TRE_2", "CKV_TRE_3"} <= failed


def test_overlay_renderer_matches_kubectl_kustomize() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed; the overlay is rendered by tests/k8s/kustomize_lite.py only")
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / "gpu-pool")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert normalise(render(ROOT / "k8s" / "overlays" / "gpu-pool")) == normalise(
        [d for d in yaml.safe_load_all(out) if d]
    )


def test_overlay_worker_env_configures_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = next(
        o for o in render(ROOT / "k8s" / "overlays" / "gpu-pool") if o["metadata"]["name"] == "tre-worker"
    )
    for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in e:
            monkeypatch.setenv(e["name"], e["value"])
    s = KubernetesSettings()
    assert s.gpu_node_selector == {"tre.io/pool": "gpu"} and s.cpu_node_selector == {"tre.io/pool": "cpu"}
    assert s.storage_class == "fast-rwo" and s.quota_gpu == 8
    # The admission policies pin the quota the worker creates: the overlay's params must agree,
    # or the API server would refuse every project namespace (fail closed, but broken).
    rendered = render(ROOT / "k8s" / "overlays" / "gpu-pool")
    cm = next(
        o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "tre-admission-params"
    )
    quota = next(o for o in m.namespace_objects("p1", s) if o["kind"] == "ResourceQuota")
    pol = policy("tre-project-namespaces")
    assert admission_failures(pol, quota, param=cm) == []
    assert admission_failures(pol, quota) != []  # the base's params (4 GPUs) would refuse it


# --- the ValidatingAdmissionPolicy's CEL, evaluated with cel-python ------------------------


def test_admission_policy_accepts_generated_job_and_collector(tmp_path: Path) -> None:
    pol = policy("tre-job-pods")
    for spec in specs(tmp_path):
        job = m.job(spec, SETTINGS)
        assert admission_failures(pol, job) == []
        assert admission_failures(pol, m.collector_pod(spec, SETTINGS)) == []
        # The pod the Job controller creates from the template (owned by the Job).
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "labels": job["spec"]["template"]["metadata"]["labels"],
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job["metadata"]["name"],
                        "controller": True,
                    }
                ],
            },
            "spec": job["spec"]["template"]["spec"],
        }
        assert admit(pod, username=JOB_CONTROLLER).allowed


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j, p, c: j["spec"].update(backoffLimit=3), "backoffLimit 0"),
        (lambda j, p, c: j["spec"].pop("activeDeadlineSeconds"), "activeDeadlineSeconds"),
        (lambda j, p, c: p.update(automountServiceAccountToken=True), "no service account token"),
        (lambda j, p, c: p.update(hostNetwork=True), "host namespaces"),
        (lambda j, p, c: p["securityContext"].update(runAsUser=0), "runAsNonRoot"),
        (lambda j, p, c: c["securityContext"]["capabilities"].update(add=["NET_RAW"]), "drop ALL"),
        (lambda j, p, c: c["securityContext"].update(readOnlyRootFilesystem=False), "read-only root"),
        (lambda j, p, c: c.update(image="reg.example.org/seg:latest"), "pinned by digest"),
        (lambda j, p, c: c["resources"]["requests"].update(memory="1Mi"), "requests must equal limits"),
        (lambda j, p, c: c["resources"]["requests"].pop("nvidia.com/gpu"), "requests must equal limits"),
        (lambda j, p, c: p.pop("runtimeClassName"), "sandboxed RuntimeClass"),
        (
            lambda j, p, c: p["volumes"].append({"name": "h", "hostPath": {"path": "/srv"}}),
            "volumes are only",
        ),
        (
            lambda j, p, c: p["volumes"][0]["persistentVolumeClaim"].pop("readOnly"),
            "read-only dataset-* claims",
        ),
        (lambda j, p, c: c["volumeMounts"][0].pop("readOnly"), "mounted writable"),
    ],
)
def test_admission_policy_rejects_weakened_jobs(tmp_path: Path, mutate: Any, message: str) -> None:
    job = copy.deepcopy(m.job(specs(tmp_path)[0], SETTINGS))
    pod = job["spec"]["template"]["spec"]
    mutate(job, pod, pod["containers"][0])
    failures = admission_failures(policy("tre-job-pods"), job)
    assert any(message in f for f in failures), failures


def test_namespace_policy_pins_what_the_worker_creates() -> None:
    pol = policy("tre-project-namespaces")
    objs = {o["kind"]: o for o in m.namespace_objects("p1", SETTINGS)}
    for obj in objs.values():
        assert admission_failures(pol, obj) == [], obj["kind"]
    evil_np = copy.deepcopy(objs["NetworkPolicy"])
    evil_np["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    assert "the worker may only write deny-all NetworkPolicies" in admission_failures(pol, evil_np)
    elsewhere = copy.deepcopy(objs["ResourceQuota"])
    elsewhere["metadata"]["namespace"] = "kube-system"
    assert admission_failures(pol, elsewhere)
    evil_sa = copy.deepcopy(objs["ServiceAccount"])
    evil_sa["automountServiceAccountToken"] = True
    assert admission_failures(pol, evil_sa)
    evil_ns = copy.deepcopy(objs["Namespace"])
    evil_ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
    assert admission_failures(pol, evil_ns)
    evil_rb = copy.deepcopy(objs["RoleBinding"])
    evil_rb["subjects"].append({"kind": "ServiceAccount", "name": "tre-job", "namespace": "tre-p-p1"})
    assert admission_failures(pol, evil_rb)


def test_policies_come_before_the_rights_they_restrict() -> None:
    """Rendered in this order (kubectl's kustomize when present), an apply never grants the
    worker its RBAC or starts it before the admission policies and their bindings exist."""
    overlay = ROOT / "k8s" / "overlays" / "gpu-pool"
    if shutil.which("kubectl"):
        out = subprocess.run(
            ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    else:
        kinds = [d["kind"] for d in render(overlay)]
    last_guard = max(
        i
        for i, k in enumerate(kinds)
        if k in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    )
    first_right = min(
        i
        for i, k in enumerate(kinds)
        if k in ("ClusterRole", "ClusterRoleBinding", "RoleBinding", "Deployment")
    )
    assert kinds.index("ConfigMap") < last_guard < first_right, kinds


def test_an_images_declared_volumes_are_masked_read_only(tmp_path: Path) -> None:
    """Redteam round 11: containerd's CRI makes each ``Volumes`` path of an image's config a
    writable folder on the node's disk (outside the read-only root and the ephemeral-storage
    accounting) unless a mount of the pod has that path. Each is now an empty read-only
    memory emptyDir; the admission policy admits such masks only read-only."""
    spec = specs(tmp_path)[2]
    job = m.job(spec, SETTINGS)
    pod = job["spec"]["template"]["spec"]
    mounts = {v["mountPath"]: v for v in pod["containers"][0]["volumeMounts"]}
    masks = {v["name"]: v for v in pod["volumes"] if v["name"].startswith("mask-")}
    assert {mounts[p]["name"] for p in ("/var/lib/app", "/tmp/cache")} == set(masks)
    assert all(mounts[p]["readOnly"] is True for p in ("/var/lib/app", "/tmp/cache"))
    assert mounts["/data"]["name"] == "data-0"  # our own read-only dataset mount covers it
    assert all(v["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Ki"} for v in masks.values())
    assert admit(job).allowed
    writable = denials_after(job, lambda p: p["containers"][0]["volumeMounts"][-1].pop("readOnly"))
    assert writable, "a writable mask must be refused"
    on_disk = denials_after(job, lambda p: p["volumes"][-1]["emptyDir"].pop("medium"))
    assert on_disk, "a mask on the node's disk must be refused"


def test_a_job_pod_is_told_nothing_of_the_clusters_dns(tmp_path: Path) -> None:
    """Redteam round 14: with the default `ClusterFirst` policy the kubelet writes the
    cluster DNS service's address, the cluster domain and the project namespace's search
    path into the job's /etc/resolv.conf. The job has no network, so every job pod gets a
    resolver configuration naming only the loopback address and no search path."""
    for spec in specs(tmp_path):
        pod = m.job(spec, SETTINGS)["spec"]["template"]["spec"]
        assert pod.get("dnsPolicy") == "None", spec.job_id
        assert pod.get("dnsConfig") == {"nameservers": ["127.0.0.1"]}, spec.job_id


def test_a_job_pod_is_told_neither_its_pod_name_nor_the_api_servers_address(tmp_path: Path) -> None:
    """Redteam round 15: a job pod's hostname was its pod name (the job id and the Job
    controller's random suffix, paired with the pod IP in /etc/hosts), and the kubelet put
    the `kubernetes` service's cluster IP and port in its environment (it does so whatever
    `enableServiceLinks` says, but never over a variable the container declares). Every job
    pod now has one fixed hostname and declares those variables empty; no token is mounted
    and no service links are injected; the admission policy still admits it."""
    for spec in specs(tmp_path):
        job = m.job(spec, SETTINGS)
        pod = job["spec"]["template"]["spec"]
        assert pod.get("hostname") == "tre-sandbox", spec.job_id
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        for name in ("HOST", "PORT", "PORT_HTTPS"):
            assert env.get(f"KUBERNETES_SERVICE_{name}") == "", (spec.job_id, name)
        for name in ("", "_443_TCP", "_443_TCP_PROTO", "_443_TCP_PORT", "_443_TCP_ADDR"):
            assert env.get(f"KUBERNETES_PORT{name}") == "", (spec.job_id, name)
        assert not any(v.get("projected") or v.get("secret") for v in pod["volumes"])
        assert admit(job).allowed


def test_a_jobs_own_env_cannot_put_the_api_servers_address_back(tmp_path: Path) -> None:
    """The empty declarations come after the job's own variables."""
    spec = specs(tmp_path)[1]
    spec = dataclasses.replace(spec, env={**spec.env, "KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    env = {
        e["name"]: e.get("value")
        for e in m.job(spec, SETTINGS)["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KUBERNETES_SERVICE_HOST"] == ""
