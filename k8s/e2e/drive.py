"""Scenarios the e2e script runs through the real KubernetesExecutor, as the worker.

Run by k8s/e2e/run.sh with KUBECONFIG pointing at a kubeconfig that holds a token of
tre-system/tre-controller (the worker's own identity) and PYTHONPATH at the repository.
Each scenario prints one line ``PASS <name>: …`` or ``FAIL <name>: …``; the exit status is
the number of failures. Scenarios that need the cluster to misbehave do it from here:
a local TCP proxy in front of the API server cuts the exec connection (dropped exec), and
the first watch starts from resourceVersion 1 (forced 410 Gone).

    python3 k8s/e2e/drive.py [--gpu] [--only NAME ...]
    python3 k8s/e2e/drive.py --kill-during NAME   # used by run.sh for "killed worker"
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tre.executors.base import DatasetMount, JobResult, JobSpec, RunControl
from tre.executors.kubernetes import KubernetesExecutor, KubernetesSettings
from tre.executors.kubernetes import manifests as m

PROJECT = "e2e"
NS = "tre-p-e2e"
JOB_IMAGE = os.environ["E2E_JOB_IMAGE"]  # python:3.12-slim by digest (run.sh resolves it)
CUDA_IMAGE = os.environ.get("E2E_CUDA_IMAGE", "")
WORK = Path(os.environ.get("E2E_WORK", tempfile.mkdtemp(prefix="tre-e2e-")))
RESULTS: list[tuple[str, bool, str]] = []

# The probe a job runs: every address must be unreachable (connect fails or times out).
PROBE = r"""
import json, os, socket
targets = json.loads(os.environ["PROBES"])
reached = []
for name, host, port, proto in targets:
    try:
        if proto == "udp-dns":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
            query = bytes.fromhex("123401000001000000000000") + b"\x07example\x03com\x00\x00\x01\x00\x01"
            s.sendto(query, (host, port))
            s.recvfrom(512); reached.append(name)
        elif proto == "dns-name":
            socket.getaddrinfo(host, port); reached.append(name)
        else:
            socket.create_connection((host, port), timeout=3).close(); reached.append(name)
    except OSError:
        pass
print(json.dumps({"reached": reached}))
open("/output/probe.json", "w").write(json.dumps({"reached": reached}))
"""


def settings(**kw: Any) -> KubernetesSettings:
    fields: dict[str, Any] = {
        "kubeconfig": Path(os.environ["KUBECONFIG"]),
        "gpu_node_selector": json.loads(os.environ.get("E2E_GPU_SELECTOR", '{"tre.io/pool": "gpu"}')),
        "storage_class": os.environ.get("E2E_STORAGE_CLASS") or None,
    }
    if os.environ.get("E2E_COLLECTOR_IMAGE"):
        fields["collector_image"] = os.environ["E2E_COLLECTOR_IMAGE"]
    return KubernetesSettings(**{**fields, **kw})


def spec(name: str, command: list[str], job_id: str | None = None, **kw: Any) -> JobSpec:
    job_id = job_id or f"{name}-{uuid.uuid4().hex[:8]}"
    base = WORK / job_id
    (base / "output").mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = dict(
        job_id=job_id,
        project_id=PROJECT,
        image=JOB_IMAGE,
        command=command,
        datasets=[DatasetMount("e2e", pvc_name=m.dataset_pvc_name("e2e"))],
        output_dir=base / "output",
        log_path=base / "job.log",
        cpu=0.5,
        memory_mb=512,
        time_limit_s=300,
        output_limit_mb=64,
    )
    fields.update(kw)
    return JobSpec(**fields)


def kubectl(*args: str) -> str:
    """kubectl as the administrator (the worker may not list claims, nodes or services)."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", os.environ["E2E_ADMIN_KUBECONFIG"], *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def leftovers(job_id: str) -> str:
    """Objects of the job still in the cluster (as the administrator: the worker cannot list claims)."""
    return kubectl(
        "get", "jobs,pods,pvc", "-n", NS, "-l", f"{m.LABEL_JOB}={m.job_label(job_id)}", "-o", "name"
    )


def record(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def run(
    name: str, sp: JobSpec, ex: KubernetesExecutor | None = None, control: RunControl | None = None
) -> JobResult:
    result = (ex or KubernetesExecutor(settings())).run(sp, control or RunControl())
    left = leftovers(sp.job_id)
    if left:
        record(f"{name}/cleanup", False, f"left behind: {left}")
    else:
        record(f"{name}/cleanup", True, "Job, pods and output claim deleted")
    return result


# --- scenarios ------------------------------------------------------------------------------


def s_success() -> None:
    sp = spec("ok", ["python3", "-c", "open('/output/r.txt','w').write('42'); print('hello')"])
    r = run("success", sp)
    ok = (
        r.state == "succeeded"
        and (sp.output_dir / "r.txt").read_text() == "42"
        and b"hello" in sp.log_path.read_bytes()
    )
    record("success", ok, f"{r.state}: {r.reason}")


def s_failure() -> None:
    r = run("failure", spec("fail", ["python3", "-c", "raise SystemExit(3)"]))
    record("failure", r.state == "failed" and r.exit_code == 3, f"{r.state} {r.exit_code}: {r.reason}")


def s_cancel() -> None:
    started = time.monotonic()
    r = run(
        "cancel",
        spec("cancel", ["python3", "-c", "import time; time.sleep(600)"]),
        control=RunControl(is_cancelled=lambda: time.monotonic() - started > 30),
    )
    record("cancel", r.state == "cancelled", r.reason)


def s_network() -> None:
    api_ip = kubectl("get", "svc", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}")
    dns_ip = kubectl(
        "get",
        "svc",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "-o",
        "jsonpath={.items[0].spec.clusterIP}",
    )
    node_ip = kubectl("get", "nodes", "-o", "jsonpath={.items[0].status.addresses[0].address}")
    other_pod = os.environ.get("E2E_OTHER_POD_IP", "")
    probes = [
        ("kube-dns-udp", dns_ip, 53, "udp-dns"),
        ("kube-dns-tcp", dns_ip, 53, "tcp"),
        ("dns-name", "kubernetes.default.svc.cluster.local", 443, "dns-name"),
        ("api-clusterip", api_ip, 443, "tcp"),
        ("kubelet", node_ip, 10250, "tcp"),
        ("dcgm-exporter", node_ip, 9400, "tcp"),
        ("metadata", "169.254.169.254", 80, "tcp"),
        # IPv6: a dual-stack cluster's metadata endpoint (AWS Nitro), the internet, and the
        # API server's IPv6 address if the cluster has one (E2E_API_IPV6).
        ("metadata-ipv6", "fd00:ec2::254", 80, "tcp"),
        ("internet-ipv6", "2606:4700:4700::1111", 443, "tcp"),
        ("internet", "1.1.1.1", 443, "tcp"),
        ("internet-name", "example.com", 443, "dns-name"),
    ]
    if other_pod:
        probes.append(("other-pod", other_pod, 8080, "tcp"))
    if os.environ.get("E2E_API_IPV6"):
        probes.append(("api-ipv6", os.environ["E2E_API_IPV6"], 443, "tcp"))
    sp = spec("net", ["python3", "-c", PROBE], env={"PROBES": json.dumps(probes)})
    r = run("network", sp)
    reached = (
        json.loads((sp.output_dir / "probe.json").read_text())["reached"] if r.state == "succeeded" else None
    )
    record("network", reached == [], f"{r.state}; reached: {reached} of {[p[0] for p in probes]}")


def s_hijack() -> None:
    marker = "/output/PWNED"
    payload = f"open({marker!r}, 'w').write('x')\nimport sys; sys.stdout.write('FORGED')\n"
    cmd = (
        "import os; os.makedirs('/output/tre', exist_ok=True); "
        f"[open(p, 'w').write({payload!r}) for p in ('/output/tre/__init__.py', '/output/tarfile.py', "
        "'/output/sitecustomize.py')]; open('/output/result.csv', 'w').write('a,b\\n')"
    )
    sp = spec("hijack", ["python3", "-c", cmd])
    r = run("collector-hijack", sp)
    ok = (
        r.state == "succeeded"
        and not (sp.output_dir / "PWNED").exists()
        and (sp.output_dir / "tre" / "__init__.py").read_text() == payload
    )
    record("collector-hijack", ok, f"{r.state}: planted modules came out as data, not run")


def s_large() -> None:
    cmd = (
        "import os\nwith open('/output/big.bin', 'wb') as f:\n"
        "    for _ in range(600): f.write(os.urandom(1 << 20))"
    )
    sp = spec("large", ["python3", "-c", cmd], output_limit_mb=700, memory_mb=1024, time_limit_s=900)
    rss_before = _rss_mib()
    r = run("600MiB-output", sp, KubernetesExecutor(settings(collector_timeout_s=900)))
    size = (sp.output_dir / "big.bin").stat().st_size if (sp.output_dir / "big.bin").exists() else 0
    record(
        "600MiB-output",
        r.state == "succeeded" and size == 600 << 20,
        f"{r.state}; {size >> 20} MiB collected; driver RSS {rss_before} -> {_rss_mib()} MiB",
    )


def _rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


class CuttingProxy:
    """TCP proxy to the API server that cuts exec connections after `cut_after` bytes."""

    def __init__(self, upstream: tuple[str, int], cut_after: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            client, _ = self.sock.accept()
            threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        first = client.recv(65536)  # TLS ClientHello: we cannot see the path, so we cut long streams
        server.sendall(first)
        threading.Thread(target=self._copy, args=(client, server, None), daemon=True).start()
        self._copy(server, client, self.cut_after)

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                sent += len(data)
                if limit is not None and sent > limit:
                    break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def s_dropped_exec() -> None:
    """The exec stream is cut mid-transfer: the job must fail closed with nothing recorded."""
    cfg = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    cluster = cfg["clusters"][0]["cluster"]
    host, port = cluster["server"].split("://", 1)[1].rsplit(":", 1)
    proxy = CuttingProxy((host, int(port)), cut_after=8 << 20)
    cluster["server"] = f"https://127.0.0.1:{proxy.port}"
    cluster["tls-server-name"] = "kubernetes.default.svc"
    cut_cfg = WORK / "kubeconfig-cut"
    cut_cfg.write_text(yaml.safe_dump(cfg))
    cmd = "import os\nopen('/output/big.bin','wb').write(os.urandom(64 << 20))"
    sp = spec("dropexec", ["python3", "-c", cmd], output_limit_mb=128)
    ex = KubernetesExecutor(settings(kubeconfig=cut_cfg, watch_window_s=2))
    r = run("dropped-exec", sp, ex)
    ok = r.state == "failed" and "outputs not collected" in r.reason and not any(sp.output_dir.iterdir())
    record("dropped-exec", ok, r.reason)


def s_watch_410() -> None:
    ex = KubernetesExecutor(settings())
    real = ex._list_pods
    calls = {"n": 0}

    def stale_first(ns: str, selector: str) -> tuple[str, list[dict[str, Any]]]:
        rv, items = real(ns, selector)
        calls["n"] += 1
        return ("1" if calls["n"] == 1 else rv), items  # resourceVersion 1 is long compacted: 410

    ex._list_pods = stale_first  # type: ignore[method-assign]
    r = run("watch-410", spec("w410", ["python3", "-c", "import time; time.sleep(20)"]), ex)
    record("watch-410", r.state == "succeeded" and calls["n"] >= 2, f"{r.state}; lists: {calls['n']}")


def s_cuda() -> None:
    if not CUDA_IMAGE:
        record("cuda-gvisor", False, "E2E_CUDA_IMAGE not set")
        return
    cmd = [
        "python3",
        "-c",
        "import subprocess; out = subprocess.check_output(['nvidia-smi', '-L']).decode(); "
        "open('/output/gpu.txt', 'w').write(out)",
    ]
    sp = spec("cuda", cmd, image=CUDA_IMAGE, gpu=1, memory_mb=2048, runtime_class="gvisor")
    r = run("cuda-gvisor", sp)
    text = (sp.output_dir / "gpu.txt").read_text() if (sp.output_dir / "gpu.txt").exists() else ""
    record(
        "cuda-gvisor", r.state == "succeeded" and "GPU 0" in text, f"{r.state}: {text.strip() or r.reason}"
    )


KILLED_CMD = (
    "import time; print('a', flush=True); time.sleep(40); open('/output/r.txt','w').write('ok'); print('b')"
)


def s_killed_worker() -> None:
    """The worker is killed (SIGKILL) while the job runs; a new one reattaches and finishes."""
    sp = spec("killed", ["python3", "-c", KILLED_CMD])
    ref_file = WORK / f"{sp.job_id}.ref"
    child = subprocess.Popen([sys.executable, __file__, "--child-run", sp.job_id, str(ref_file)])
    for _ in range(120):
        if ref_file.exists():
            break
        time.sleep(1)
    time.sleep(10)  # the job is running and its log is being followed
    child.send_signal(signal.SIGKILL)
    child.wait()
    r = KubernetesExecutor(settings()).reattach(sp, ref_file.read_text(), RunControl())
    left = leftovers(sp.job_id)
    log = sp.log_path.read_bytes()
    ok = (
        r.state == "succeeded"
        and (sp.output_dir / "r.txt").read_text() == "ok"
        and log.count(b"a\n") == 1
        and b"b\n" in log
    )
    record("killed-worker", ok and not left, f"{r.state}; log {log!r}; left behind: {left or 'nothing'}")


def child_run(job_id: str, ref_file: str) -> None:
    """The worker that gets killed: same spec (same job id and directories) as the parent's."""
    sp = spec("killed", ["python3", "-c", KILLED_CMD], job_id=job_id)

    def started(ref: str) -> None:
        Path(ref_file).write_text(ref)

    KubernetesExecutor(settings()).run(sp, RunControl(on_started=started))


SCENARIOS: dict[str, Callable[[], None]] = {
    "success": s_success,
    "failure": s_failure,
    "cancel": s_cancel,
    "network": s_network,
    "collector-hijack": s_hijack,
    "600MiB-output": s_large,
    "dropped-exec": s_dropped_exec,
    "watch-410": s_watch_410,
    "killed-worker": s_killed_worker,
    "cuda-gvisor": s_cuda,
}


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child-run":
        child_run(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--gpu", action="store_true", help="also run CUDA under gVisor (needs a GPU node with nvproxy)"
    )
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    names = args.only or [n for n in SCENARIOS if n != "cuda-gvisor" or args.gpu]
    for name in names:
        try:
            SCENARIOS[name]()
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
            record(name, False, f"{type(exc).__name__}: {exc}")
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed", flush=True)
    return len(failed)


if __name__ == "__main__":
    raise SystemExit(main())
