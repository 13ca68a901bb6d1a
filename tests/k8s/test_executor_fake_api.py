"""KubernetesExecutor control flow against a fake API server.

The fake (tests/k8s/fakekube.py) is a real HTTP server on 127.0.0.1 that speaks the recorded
JSON of the Kubernetes API (REST objects, watch event streams, 410 Gone, pod logs, and the
exec WebSocket). The executor uses the official `kubernetes` client, configured from a
generated kubeconfig pointing at it; nothing in the client or the executor is mocked.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.k8s.fakekube import FakeApiServer, Scenario
from tre.executors.base import DatasetMount, ExecutorError, JobSpec, RunControl
from tre.executors.kubernetes import KubernetesExecutor, KubernetesSettings

IMAGE = "registry.example.org/tre/job@sha256:" + "ab" * 32


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def spec_for(tmp_path: Path, **kw: object) -> JobSpec:
    base: dict[str, object] = dict(
        job_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        project_id="lung-ct-01",
        image=IMAGE,
        command=["python", "-m", "analysis", "--in", "/data"],
        datasets=[DatasetMount("ds-lidc", pvc_name="ds-lidc")],
        output_dir=tmp_path / "out",
        log_path=tmp_path / "job.log",
        cpu=2.0,
        memory_mb=4096,
        gpu=1,
        time_limit_s=300,
        output_limit_mb=1,
    )
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def executor_for(
    server: FakeApiServer, dataset_provisioned: bool = True, policies: bool = True
) -> KubernetesExecutor:
    if dataset_provisioned:
        server.seed_dataset_claim("tre-p-lung-ct-01", "ds-lidc")
    if policies:
        server.seed_admission_policies()
    settings = KubernetesSettings(
        kubeconfig=server.kubeconfig,
        watch_window_s=1,
        retry_backoff_s=0.01,
        collector_image="registry.example.org/tre/job-cpu@sha256:" + "cd" * 32,
    )
    return KubernetesExecutor(settings)


SUCCESS = ["pod_pending", "pod_creating", "pod_running", "pod_succeeded"]


def test_successful_job_end_to_end(tmp_path: Path) -> None:
    tar = make_tar({"result.txt": b"42\n", "masks/seg.nii": b"\x00" * 2048})
    scenario = Scenario(SUCCESS, logs=b"loading 120 slices\nok\n", output_tar=tar)
    started: list[str] = []
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        result = executor_for(server).run(spec, RunControl(on_started=started.append))

    assert (result.state, result.exit_code) == ("succeeded", 0), result.reason
    assert started == ["tre-p-lung-ct-01/tre-job-0f1e2d3c4b5a69788796a5b4c3d2e1f0"]
    assert spec.log_path.read_bytes() == b"loading 120 slices\nok\n"
    assert (spec.output_dir / "result.txt").read_bytes() == b"42\n"
    assert (spec.output_dir / "masks" / "seg.nii").stat().st_size == 2048

    # The namespace and its guard objects were created first, with the controls the issue asks for.
    ns_post = server.calls("POST", r"^/api/v1/namespaces$")[0].body
    assert ns_post["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    netpol = server.calls("POST", r"/networkpolicies$")[0].body
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"] and netpol["spec"]["egress"] == []
    quota = server.calls("POST", r"/resourcequotas$")[0].body["spec"]["hard"]
    assert {"requests.nvidia.com/gpu", "count/jobs.batch", "limits.ephemeral-storage"} <= set(quota)
    assert server.calls("POST", r"/limitranges$")
    binding = server.calls("POST", r"/rolebindings$")[0].body
    assert binding["roleRef"]["name"] == "tre-job-runner"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "tre-controller", "namespace": "tre-system"}
    ]

    job = server.calls("POST", r"/jobs$")[0].body
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 300
    assert pod["automountServiceAccountToken"] is False and pod["runtimeClassName"] == "gvisor"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    # The output PVC is owned by the Job the server created (uid from its response).
    pvc = server.calls("POST", r"/persistentvolumeclaims$")[0].body
    owner = pvc["metadata"]["ownerReferences"][0]
    assert owner["name"] == job["metadata"]["name"] and len(owner["uid"]) == 36
    # Logs were followed as a stream; outputs came through the collector's exec.
    assert server.calls("GET", r"/pods/[^/]+/log$")[0].query["follow"] == ["true"]
    exec_call = server.calls("GET", r"/pods/tre-collect-[^/]+/exec$")[0]
    assert exec_call.query["command"][:4] == ["python3", "-I", "-S", "-c"]
    # Everything is cleaned up: Job (cascading to its pod), output PVC, collector pod.
    assert server.calls("DELETE", r"/jobs/tre-job-")
    assert server.calls("DELETE", r"/persistentvolumeclaims/tre-out-")
    assert server.calls("DELETE", r"/pods/tre-collect-")
    assert not [
        k for k in server.cluster.objects if "/jobs/" in k or "/tre-out-" in k or "/tre-collect-" in k
    ]


@pytest.mark.parametrize("how", ["event", "status"])
def test_watch_410_gone_relists(tmp_path: Path, how: str) -> None:
    scenario = Scenario(SUCCESS, gone_on_first_watch=how, logs=b"x\n", output_tar=make_tar({"a": b"1"}))
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path), RunControl())
        lists = [
            r
            for r in server.calls("GET", r"/namespaces/[^/]+/pods$")
            if "watch" not in r.query and "fieldSelector" not in r.query
        ]
        watches = [
            r
            for r in server.calls("GET", r"/namespaces/[^/]+/pods$")
            if r.query.get("watch") == ["true"] and "fieldSelector" not in r.query
        ]
    assert result.state == "succeeded", result.reason
    # list -> watch (410) -> list again -> watch from the new resourceVersion
    assert len(lists) >= 2
    assert watches[1].query["resourceVersion"] != watches[0].query["resourceVersion"]


def test_oomkilled_is_reported_clearly(tmp_path: Path) -> None:
    scenario = Scenario(
        ["pod_pending", "pod_running", "pod_oomkilled"],
        final_job="job_failed_backofflimit",
        logs=b"allocating volume\n",
        output_tar=make_tar({}),
    )
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path), RunControl())
    assert result.state == "failed" and result.exit_code == 137
    assert "out of memory" in result.reason and "4096 MiB" in result.reason and "OOMKilled" in result.reason


def test_deadline_exceeded_is_timed_out(tmp_path: Path) -> None:
    scenario = Scenario(
        ["pod_pending", "pod_running", "pod_terminating"],
        final_job="job_failed_deadline",
        delete_pod_at_end=True,
        logs=b"epoch 1\nepoch 2\n",
        output_tar=make_tar({"partial.csv": b"a,b\n"}),
    )
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path, time_limit_s=60)
        result = executor_for(server).run(spec, RunControl())
    assert result.state == "timed_out"
    assert "60 s" in result.reason and "DeadlineExceeded" in result.reason
    # What the job wrote before the deadline is still collected for the reviewers.
    assert (spec.output_dir / "partial.csv").read_bytes() == b"a,b\n"


def test_nonzero_exit(tmp_path: Path) -> None:
    scenario = Scenario(
        ["pod_pending", "pod_running", "pod_failed_exit3"],
        final_job="job_failed_backofflimit",
        output_tar=make_tar({}),
    )
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path), RunControl())
    assert (result.state, result.exit_code, result.reason) == ("failed", 3, "exited with code 3")


def test_image_pull_backoff_fails_fast_and_deletes_job(tmp_path: Path) -> None:
    scenario = Scenario(["pod_pending", "pod_errimagepull", "pod_imagepullbackoff"], hang=True)
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path), RunControl())
        assert server.calls("DELETE", r"/jobs/tre-job-")
        assert not server.calls("POST", r"/pods$"), "no collector for a job that never ran"
    assert result.state == "failed"
    assert (
        "could not be pulled" in result.reason
        and "ImagePullBackOff" in result.reason
        and IMAGE in result.reason
    )


def test_cancel_deletes_the_job(tmp_path: Path) -> None:
    scenario = Scenario(["pod_pending", "pod_running"], hang=True, logs=b"working\n")
    checks = iter(range(1000))
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(
            spec_for(tmp_path), RunControl(is_cancelled=lambda: next(checks) >= 3)
        )
        deletes = server.calls("DELETE", r"/jobs/tre-job-")
    assert result.state == "cancelled"
    assert deletes and deletes[0].path.endswith("/tre-job-0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def test_outputs_over_the_limit_fail_the_job(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, output_tar=make_tar({"big.bin": b"\x01" * (2 * 1024 * 1024)}))
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path, output_limit_mb=1), RunControl())
    assert result.state == "failed" and "exceed the limit" in result.reason


def test_existing_namespace_is_patched_not_recreated(tmp_path: Path) -> None:
    with FakeApiServer(Scenario(SUCCESS, output_tar=make_tar({})), tmp_path) as server:
        ex = executor_for(server)
        ex.ensure_namespace("lung-ct-01")
        ex.ensure_namespace("lung-ct-01")
        assert len(server.calls("POST", r"^/api/v1/namespaces$")) == 2
        assert server.calls("PATCH", r"^/api/v1/namespaces/tre-p-lung-ct-01$")
        assert server.calls("PATCH", r"/resourcequotas/tre-project-quota$")


def test_reattach_follows_a_running_job(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, logs=b"resumed\n", output_tar=make_tar({"r.txt": b"ok"}))
    with FakeApiServer(scenario, tmp_path) as server:
        first = executor_for(server)
        spec = spec_for(tmp_path)
        first.ensure_namespace(spec.project_id)
        from tre.executors.kubernetes import manifests

        job = manifests.job(spec, first.settings)
        first.batch.create_namespaced_job(job["metadata"]["namespace"], job, _preload_content=False)
        posts_before = len(server.calls("POST", r"/jobs$"))
        # A new executor, as after a worker restart.
        result = executor_for(server).reattach(
            spec, f"tre-p-lung-ct-01/{job['metadata']['name']}", RunControl()
        )
        assert len(server.calls("POST", r"/jobs$")) == posts_before
    assert result.state == "succeeded", result.reason
    assert (spec.output_dir / "r.txt").read_bytes() == b"ok"
    assert spec.log_path.read_bytes() == b"resumed\n"


def test_reattach_to_vanished_job(tmp_path: Path) -> None:
    with FakeApiServer(Scenario(SUCCESS), tmp_path) as server:
        result = executor_for(server).reattach(
            spec_for(tmp_path), "tre-p-lung-ct-01/tre-job-gone", RunControl()
        )
    assert result.state == "failed" and "no longer exists" in result.reason


def test_missing_dataset_claim_fails_before_creating_the_job(tmp_path: Path) -> None:
    with FakeApiServer(Scenario(SUCCESS), tmp_path) as server:
        result = executor_for(server, dataset_provisioned=False).run(spec_for(tmp_path), RunControl())
        assert not server.calls("POST", r"/jobs$")
    assert result.state == "failed" and "ds-lidc" in result.reason and "not provisioned" in result.reason


def test_transient_api_errors_do_not_kill_a_running_job(tmp_path: Path) -> None:
    scenario = Scenario(
        SUCCESS, unavailable={"get_job": 2, "list_pods": 2}, output_tar=make_tar({"ok": b"1"})
    )
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path), RunControl())
        assert not scenario.unavailable["get_job"] and not scenario.unavailable["list_pods"]
    assert result.state == "succeeded", result.reason


def test_persistent_api_errors_give_up_with_a_clear_error(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, unavailable={"get_job": 100})
    with FakeApiServer(scenario, tmp_path) as server:
        with pytest.raises(ExecutorError, match="503"):
            executor_for(server).run(spec_for(tmp_path), RunControl())


# --- issue 18: the collector, fail-closed collection, idempotent reattach, log resume ------


def test_planted_output_module_does_not_run_in_the_collector(tmp_path: Path) -> None:
    """End to end: the fake runs the exec command for real over a hostile /output."""
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('x')\nimport sys; sys.stdout.write('FORGED')\n".encode()
    files = {"tre/__init__.py": payload, "tarfile.py": payload, "result.csv": b"a,b\n1,2\n"}
    with FakeApiServer(Scenario(SUCCESS, output_files=files), tmp_path) as server:
        spec = spec_for(tmp_path)
        result = executor_for(server).run(spec, RunControl())
        command = server.cluster.exec_commands[0]
    assert result.state == "succeeded", result.reason
    assert command[:4] == ["python3", "-I", "-S", "-c"] and command[5] == "/output"
    assert not marker.exists()
    assert (spec.output_dir / "tre" / "__init__.py").read_bytes() == payload  # data, not code
    assert (spec.output_dir / "result.csv").read_bytes() == b"a,b\n1,2\n"


def test_outputs_over_the_limit_found_by_the_real_packer(tmp_path: Path) -> None:
    files = {"big.bin": b"\x01" * (2 * 1024 * 1024)}
    with FakeApiServer(Scenario(SUCCESS, output_files=files), tmp_path) as server:
        spec = spec_for(tmp_path, output_limit_mb=1)
        result = executor_for(server).run(spec, RunControl())
    assert (
        result.state == "failed"
        and result.reason == "outputs not collected: outputs exceed the limit of 1048576 bytes"
    )
    assert list(spec.output_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("end", "why"),
    [
        ("drop", "connection to the collector dropped"),
        ("no_status", "exit status never arrived"),
        ("cut_tar", "cut short or corrupt"),
    ],
)
def test_incomplete_transfer_fails_closed_and_records_nothing(tmp_path: Path, end: str, why: str) -> None:
    tar = make_tar({"a.bin": b"\x02" * 300_000, "b.bin": b"\x03" * 300_000})
    with FakeApiServer(Scenario(SUCCESS, output_tar=tar, exec_end=end), tmp_path) as server:
        spec = spec_for(tmp_path)
        result = executor_for(server).run(spec, RunControl())
        assert server.calls("DELETE", r"/pods/tre-collect-")
    assert result.state == "failed" and why in result.reason, result.reason
    assert list(spec.output_dir.iterdir()) == []  # nothing partial for the worker to record
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tre-collect-0")] == []


def test_repeated_collection_is_idempotent(tmp_path: Path) -> None:
    """A second worker reattaching after a completed collection neither re-collects nor fails."""
    scenario = Scenario(SUCCESS, output_tar=make_tar({"r.txt": b"ok"}))
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        assert executor_for(server).run(spec, RunControl()).state == "succeeded"
        job = server.calls("POST", r"/jobs$")[0].body
        ex = executor_for(server)  # as if the first worker died before recording the result
        ex.batch.create_namespaced_job("tre-p-lung-ct-01", job, _preload_content=False)
        again = ex.reattach(spec, f"tre-p-lung-ct-01/{job['metadata']['name']}", RunControl())
        assert len(server.cluster.exec_commands) == 1
    assert again.state == "succeeded", again.reason
    assert (spec.output_dir / "r.txt").read_bytes() == b"ok"


def test_collection_interrupted_twice_is_not_retried(tmp_path: Path) -> None:
    """An output that kills the worker while copying must not kill every worker in turn."""
    scenario = Scenario(SUCCESS, output_tar=make_tar({"r.txt": b"ok"}))
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        # Two earlier workers died mid-collection: their attempt counter and a partial tree remain.
        (tmp_path / ".tre-collect-attempts-0f1e2d3c4b5a69788796a5b4c3d2e1f0").write_text("2")
        spec.output_dir.mkdir()
        (spec.output_dir / "partial.bin").write_bytes(b"\0" * 10)
        ex = executor_for(server)
        ex.ensure_namespace(spec.project_id)
        from tre.executors.kubernetes import manifests

        job = manifests.job(spec, ex.settings)
        ex.batch.create_namespaced_job(job["metadata"]["namespace"], job, _preload_content=False)
        result = ex.reattach(spec, f"tre-p-lung-ct-01/{job['metadata']['name']}", RunControl())
        assert server.cluster.exec_commands == []
        assert server.calls("DELETE", r"/jobs/tre-job-")
    assert result.state == "failed" and "interrupted 2 times" in result.reason
    assert list(spec.output_dir.iterdir()) == []


def test_reattach_appends_the_log_from_the_saved_offset(tmp_path: Path) -> None:
    """The previous worker saved two lines and half of a third; nothing is lost or repeated."""
    lines = [f"step {i}\n".encode() for i in range(6)]
    scenario = Scenario(SUCCESS, logs=b"".join(lines), output_tar=make_tar({}))
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        spec.log_path.write_bytes(lines[0] + lines[1] + b"ste")  # killed mid-write
        pod = "tre-job-0f1e2d3c4b5a69788796a5b4c3d2e1f0-x7k2p"
        state = {"pod": pod, "bytes": len(lines[0] + lines[1]), "last": [1748859303, 500_000_000]}
        spec.log_path.with_name("job.log.k8s-offset").write_text(__import__("json").dumps(state))
        ex = executor_for(server)
        ex.ensure_namespace(spec.project_id)
        from tre.executors.kubernetes import manifests

        job = manifests.job(spec, ex.settings)
        ex.batch.create_namespaced_job(job["metadata"]["namespace"], job, _preload_content=False)
        result = ex.reattach(spec, f"tre-p-lung-ct-01/{job['metadata']['name']}", RunControl())
        query = server.cluster.log_requests[0]
    assert result.state == "succeeded", result.reason
    assert spec.log_path.read_bytes() == b"".join(lines)
    assert query["timestamps"] == ["true"] and int(query["sinceSeconds"][0]) >= 1


def test_a_fresh_run_starts_the_log_afresh(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, logs=b"one\ntwo\n", output_tar=make_tar({}))
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        spec.log_path.write_bytes(b"stale from an earlier attempt\n")
        result = executor_for(server).run(spec, RunControl())
    assert result.state == "succeeded" and spec.log_path.read_bytes() == b"one\ntwo\n"


def test_no_namespace_is_provisioned_without_the_admission_policies(tmp_path: Path) -> None:
    """The worker's RBAC is only safe with the policies bound; without them it refuses to start."""
    with FakeApiServer(Scenario(SUCCESS), tmp_path) as server:
        with pytest.raises(
            ExecutorError, match="tre-job-pods, tre-worker-claims, tre-project-namespaces, tre-worker-exec"
        ):
            executor_for(server, policies=False).run(spec_for(tmp_path), RunControl())
        assert not server.calls("POST", r"^/api/v1/namespaces$") and not server.calls("POST", r"/jobs$")


def test_a_log_stream_cut_short_says_so_in_the_log(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, logs=b"one\ntwo\n", log_cut=True, output_tar=make_tar({}))
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        result = executor_for(server).run(spec, RunControl())
    assert result.state == "succeeded", result.reason
    assert (
        spec.log_path.read_bytes() == b"one\ntwo\n\n[tre: the log stream ended early; lines may be missing]\n"
    )


def test_a_collector_pod_left_by_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, output_tar=make_tar({"r.txt": b"ok"}))
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        ex = executor_for(server)
        from tre.executors.kubernetes import manifests

        stale = manifests.collector_pod(spec, ex.settings)
        stale["metadata"]["uid"] = "stale"
        server.seed(f"/api/v1/namespaces/tre-p-lung-ct-01/pods/{stale['metadata']['name']}", stale)
        result = ex.run(spec, RunControl())
        order = [
            (r.method, r.path.rsplit("/", 1)[-1])
            for r in server.cluster.requests
            if "tre-collect-" in r.path or (r.method == "POST" and r.path.endswith("/pods"))
        ]
    assert result.state == "succeeded", result.reason
    assert (spec.output_dir / "r.txt").read_bytes() == b"ok"
    first_delete = order.index(("DELETE", stale["metadata"]["name"]))
    assert order[0] == ("POST", "pods") and order[first_delete + 1] == ("POST", "pods")


@pytest.mark.parametrize(
    ("ask", "resource"),
    [
        ({"gpu": 8}, "nvidia.com/gpu"),
        ({"cpu": 64.0}, "cpu"),
        ({"memory_mb": 256 * 1024}, "memory"),
        ({"output_limit_mb": 600 * 1024}, "storage"),
    ],
)
def test_a_job_larger_than_the_project_quota_fails_at_once(
    tmp_path: Path, ask: dict[str, object], resource: str
) -> None:
    """Kubernetes would accept the Job and then refuse its pod (quota, LimitRange) on every
    retry until the deadline: the job sat 'running' for its whole time limit. Now it fails
    before anything is created, with fixed words and the namespace's maximum (fake API)."""
    with FakeApiServer(Scenario(SUCCESS), tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path, **ask), RunControl())
        assert not server.calls("POST", r"/jobs$") and not server.calls("POST", r"/persistentvolumeclaims$")
    assert result.state == "failed", result
    assert result.reason.startswith("the job asks for more than a project namespace may use: "), result.reason
    assert resource in result.reason


def test_a_job_at_the_quota_runs(tmp_path: Path) -> None:
    with FakeApiServer(Scenario(SUCCESS, output_tar=make_tar({})), tmp_path) as server:
        result = executor_for(server).run(
            spec_for(tmp_path, gpu=4, cpu=32.0, memory_mb=128 * 1024), RunControl()
        )
    assert result.state == "succeeded", result


@pytest.mark.parametrize("pvc_made", [False, True])
def test_a_job_left_by_a_worker_that_died_before_recording_it_is_adopted(
    tmp_path: Path, pvc_made: bool
) -> None:
    """The worker died after creating the Job (and perhaps its output claim) but before the
    reference was stored, so the next worker calls run() again (tre/jobs/worker.py: reattach
    without a reference). Before: 409 on the Job, an executor error, and the first Job, its
    pod and claim left running in the cluster. Now the Job, which carries this job's id, is
    followed to the end and everything is deleted (fake API)."""
    from tre.executors.kubernetes import manifests

    scenario = Scenario(SUCCESS, logs=b"ran once\n", output_tar=make_tar({"r.txt": b"ok"}))
    with FakeApiServer(scenario, tmp_path) as server:
        first = executor_for(server)
        spec = spec_for(tmp_path)
        first.ensure_namespace(spec.project_id)
        job = manifests.job(spec, first.settings)
        ns = job["metadata"]["namespace"]
        first.batch.create_namespaced_job(ns, job, _preload_content=False)
        if pvc_made:
            owner = server.cluster.job()
            pvc = manifests.output_pvc(spec, first.settings, owner=owner)
            first.core.create_namespaced_persistent_volume_claim(ns, pvc, _preload_content=False)
        started: list[str] = []
        result = executor_for(server).run(spec, RunControl(on_started=started.append))
        assert len(server.calls("POST", r"/jobs$")) == 2  # the second answered 409
        assert len([k for k in server.cluster.objects if "/jobs/" in k]) == 0
        left = [k for k in server.cluster.objects if "/tre-out-" in k or "/tre-collect-" in k]
    assert result.state == "succeeded", result.reason
    assert started == [f"{ns}/{job['metadata']['name']}"]
    assert (spec.output_dir / "r.txt").read_bytes() == b"ok"
    assert left == []


def test_a_foreign_job_under_the_same_name_is_not_adopted(tmp_path: Path) -> None:
    """A Job under this job's name but without its id label is not ours to follow or delete."""
    from tre.executors.kubernetes import manifests

    with FakeApiServer(Scenario(SUCCESS), tmp_path) as server:
        first = executor_for(server)
        spec = spec_for(tmp_path)
        first.ensure_namespace(spec.project_id)
        job = manifests.job(spec, first.settings)
        job["metadata"]["labels"][manifests.LABEL_JOB] = "someone-else"
        first.batch.create_namespaced_job(job["metadata"]["namespace"], job, _preload_content=False)
        with pytest.raises(ExecutorError, match="already exists and is not this job's"):
            executor_for(server).run(spec, RunControl())
        assert not server.calls("DELETE", r"/jobs/")


def test_a_reference_that_cannot_be_stored_leaves_nothing_in_the_cluster(tmp_path: Path) -> None:
    """The worker's database write of the reference fails: no later worker could find the Job,
    so it and its claim are deleted before the error goes up (fake API)."""

    def refuse(ref: str) -> None:
        raise RuntimeError("database is locked")

    with FakeApiServer(Scenario(SUCCESS), tmp_path) as server:
        with pytest.raises(RuntimeError, match="database is locked"):
            executor_for(server).run(spec_for(tmp_path), RunControl(on_started=refuse))
        left = [k for k in server.cluster.objects if "/jobs/" in k or "/tre-out-" in k]
    assert left == []


def test_the_collector_pod_is_owned_by_its_job(tmp_path: Path) -> None:
    """A bare pod that ended is never garbage-collected on its own: a worker lost mid-collection
    (and a job never reattached) left the collector pod object in the namespace for good.
    Owned by the Job, it goes when the Job does (deleted, or its TTL) (fake API)."""
    with FakeApiServer(Scenario(SUCCESS, output_tar=make_tar({"a": b"1"})), tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path), RunControl())
        job_name = server.calls("POST", r"/jobs$")[0].body["metadata"]["name"]
        created_jobs = [r for r in server.cluster.requests if r.method == "GET" and "/jobs/" in r.path]
        collector = server.calls("POST", r"/pods$")[0].body
    assert result.state == "succeeded", result.reason
    owners = collector["metadata"].get("ownerReferences") or []
    assert [(o["kind"], o["name"], o["blockOwnerDeletion"]) for o in owners] == [("Job", job_name, False)]
    assert len(owners[0]["uid"]) == 36 and "controller" not in owners[0] and created_jobs


def test_a_log_over_its_budget_is_not_downloaded_to_the_end(tmp_path: Path) -> None:
    """A job that prints without end: the follower kept reading (and dropping) every byte
    through the API server for the job's whole life once its budget was spent. It now hangs
    up at the budget and says so in the log (fake API: it counts the bytes it got out)."""
    line = b"y" * 1023 + b"\n"
    scenario = Scenario(SUCCESS, logs=line * (48 * 1024), output_tar=make_tar({}))  # 48 MiB
    with FakeApiServer(scenario, tmp_path) as server:
        server.seed_dataset_claim("tre-p-lung-ct-01", "ds-lidc")
        server.seed_admission_policies()
        settings = KubernetesSettings(
            kubeconfig=server.kubeconfig,
            watch_window_s=1,
            retry_backoff_s=0.01,
            log_limit_mb=1,
            collector_image="registry.example.org/tre/job-cpu@sha256:" + "cd" * 32,
        )
        spec = spec_for(tmp_path)
        result = KubernetesExecutor(settings).run(spec, RunControl())
        sent = server.cluster.log_bytes_sent
    assert result.state == "succeeded", result.reason
    saved = spec.log_path.read_bytes()
    assert saved.endswith(b"[tre: log truncated at 1048576 bytes]\n")
    assert len(saved) < 1024 * 1024 + 100
    assert sent < 24 * 1024 * 1024, f"{sent} bytes of a 48 MiB log were downloaded past a 1 MiB budget"


@pytest.mark.parametrize("forged", [b"2099-01-01T00:00:00Z ", b"2025-06-02T10:15:99Z "])
def test_a_forged_timestamp_in_a_long_lines_tail_does_not_hide_later_lines(
    tmp_path: Path, forged: bytes
) -> None:
    """A line longer than 64 KiB is saved in pieces; the piece that ends it began with text
    the job wrote, and was parsed as a kubelet timestamp: a job could set the follower's
    'last line seen' to 2099 so that a resumed follower skipped every later line (and asked
    the kubelet for the last second only), or with 10:15:99, crash the follower's thread so
    that nothing more was saved."""
    from tre.executors.kubernetes.logs import LogFollower

    body = (
        b"2025-06-02T10:15:03Z " + b"z" * (200 * 1024 - len(forged)) + forged + b"tail\n"
        b"2025-06-02T10:15:04Z next line\n"
    )

    class Resp:
        def stream(self, n: int) -> list[bytes]:
            # Cut so that the piece ending the long line starts with the forged stamp.
            cut = body.index(forged)
            return [body[i : min(i + 64 * 1024, cut)] for i in range(0, cut, 64 * 1024)] + [body[cut:]]

        def release_conn(self) -> None:
            pass

        def close(self) -> None:
            pass

    class Core:
        def read_namespaced_pod_log(self, *a: object, **kw: object) -> Resp:
            return Resp()

    dest = tmp_path / "job.log"
    f = LogFollower(Core(), "ns", "pod", "job", dest, 10 * 1024 * 1024).start()  # type: ignore[arg-type]
    assert f.join(10) and f.error is None
    import json as _json

    state = _json.loads(dest.with_name("job.log.k8s-offset").read_text())
    assert state["last"][0] < 4102444800, state  # 2100-01-01: the kubelet's stamp, not the job's
    saved = dest.read_bytes()
    assert saved.startswith(b"zzz") and saved.endswith(forged + b"tail\nnext line\n"), saved[-80:]


def test_the_log_follower_hangs_up_at_its_budget(tmp_path: Path) -> None:
    """The budget case measured in bytes read (fake response): 48 MiB printed, 1 MiB budget."""
    from tre.executors.kubernetes.logs import LogFollower

    line = b"2025-06-02T10:15:03Z " + b"y" * 1002 + b"\n"
    taken = []

    class Resp:
        def stream(self, n: int):  # type: ignore[no-untyped-def]
            for _ in range(48 * 1024 * 1024 // (64 * len(line))):
                taken.append(64 * len(line))
                yield line * 64

        def release_conn(self) -> None:
            pass

        def close(self) -> None:
            pass

    class Core:
        def read_namespaced_pod_log(self, *a: object, **kw: object) -> Resp:
            return Resp()

    dest = tmp_path / "job.log"
    f = LogFollower(Core(), "ns", "pod", "job", dest, 1024 * 1024).start()  # type: ignore[arg-type]
    assert f.join(30) and f.error is None
    assert dest.read_bytes().endswith(b"[tre: log truncated at 1048576 bytes]\n")
    assert sum(taken) < 2 * 1024 * 1024, sum(taken)


@pytest.mark.parametrize(
    "errors",
    [{"list_collector": 1}, {"list_collector": 3}, {"create_pod": 2}],
    ids=["list1", "list3", "create2"],
)
def test_an_api_hiccup_while_starting_the_collector_does_not_lose_the_outputs(
    tmp_path: Path, errors: dict[str, int]
) -> None:
    """Following the job retries 5xx answers; waiting for the collector pod did not: one 503
    (an etcd leader change) ended the run with an executor error, and the finally deleted the
    output claim, so a job that had succeeded lost its outputs (fake API)."""
    scenario = Scenario(SUCCESS, output_tar=make_tar({"r.txt": b"kept"}), unavailable=dict(errors))
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        result = executor_for(server).run(spec, RunControl())
    assert result.state == "succeeded", result.reason
    assert (spec.output_dir / "r.txt").read_bytes() == b"kept"


def test_an_api_that_keeps_failing_fails_the_collection_in_fixed_words(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, output_tar=make_tar({"r.txt": b"x"}), unavailable={"list_collector": 1000})
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path)
        result = executor_for(server).run(spec, RunControl())
        left = [
            k for k in server.cluster.objects if "/jobs/" in k or "/tre-out-" in k or "/tre-collect-" in k
        ]
    assert result.state == "failed"
    assert (
        result.reason == "outputs not collected: the Kubernetes API kept failing while the collector started"
    )
    assert left == []


@pytest.mark.parametrize(
    ("plural", "resource", "words"),
    [
        ("jobs", "count/jobs.batch", "the project's limit of running jobs in Kubernetes is reached"),
        ("persistentvolumeclaims", "requests.storage", "the project's Kubernetes quota is used up"),
    ],
)
def test_a_used_up_quota_fails_the_job_in_fixed_words(
    tmp_path: Path, plural: str, resource: str, words: str
) -> None:
    """Many jobs at once: the ResourceQuota refuses the 17th Job (or its claim) with a 403.
    Before, that was an executor error with a reference only; now a fixed reason, and
    nothing of the job is left in the cluster (fake API)."""
    scenario = Scenario(SUCCESS, quota_exceeded={plural: resource})
    with FakeApiServer(scenario, tmp_path) as server:
        result = executor_for(server).run(spec_for(tmp_path), RunControl())
        left = [k for k in server.cluster.objects if "/jobs/" in k or "/tre-out-" in k]
    assert result.state == "failed"
    assert result.reason.startswith(words + " (ResourceQuota tre-project-quota)"), result.reason
    assert "used:" not in result.reason and left == []
