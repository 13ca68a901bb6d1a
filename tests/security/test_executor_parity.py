"""Every control one backend enforces on a job, the others enforce too (redteam round 11).

The same job is rendered by the three backends as each would hand it over: the local
sandbox's bubblewrap command line, its launcher's stage and cgroup limits; the Docker
executor's container options; the Kubernetes executor's Job and the project namespace's
objects. Each control in ``CONTROLS`` is checked on each. A backend may lack a control only
where ``GAPS`` says so, with the words SECURITY.md uses for that residual risk; a gap that
is closed must leave ``GAPS`` (the test fails on a listed gap that is enforced after all), so
the table stays true. Round 11 found the Docker backend without three controls the others
keep: it named no seccomp profile (a daemon started with ``--seccomp-profile unconfined``
ran jobs unfiltered), left the cgroup namespace to the daemon's default (``host`` on cgroup
v1 hosts), bounded /tmp's size but not its entries, and ran every container as one uid in
the host's user namespace (shared per-user kernel counters, round 10's finding on the local
sandbox).

``test_the_checks_notice_a_dropped_control`` removes controls from real renderings and
requires the check to fail, so no check passes whatever it is given.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tre.executors import procview, sysinfo
from tre.executors.base import DatasetMount, ImageConfig, InputMount, JobSpec
from tre.executors.docker import DOCKER_PROC_FILES, DockerExecutor, container_options
from tre.executors.kubernetes import manifests as k8s
from tre.executors.kubernetes.config import KubernetesSettings
from tre.executors.local import LocalExecutor, job_limits
from tre.executors.stage import Stage, launcher_argv

ROOT = Path(__file__).resolve().parents[2]
INPUT_JOB = "ab" * 16
IMAGE = "registry.tre.local/seg@sha256:" + "5e" * 32
MIB = 1024 * 1024
WRITABLE = {"/output", "/tmp", "/dev/shm"}  # noqa: S108 - paths inside the job
READ_ONLY = {"/data", "/code", f"/inputs/{INPUT_JOB}"}
# An image's declared Volumes: one of its own, one on a mount of ours, one under /output.
IMAGE_VOLUMES = ["/var/lib/app", "/data", "/output/cache"]


@dataclass
class Local:
    """What the local sandbox enforces for one job: bwrap's argv, the stage, the launcher."""

    spec: JobSpec
    argv: list[str]
    stage: Stage
    launcher: list[str]
    rootfs_entries: list[str]
    log_limit: int
    uid_count: int = 1024

    def pairs(self, *options: str) -> list[tuple[str, str]]:
        """(source, destination) of every bind option among ``options``."""
        out = []
        for i, arg in enumerate(self.argv[:-2]):
            if arg in options:
                out.append((self.argv[i + 1], self.argv[i + 2]))
        return out

    def has(self, *seq: str) -> bool:
        n = len(seq)
        return any(tuple(self.argv[i : i + n]) == seq for i in range(len(self.argv) - n + 1))

    def writable(self) -> set[str]:
        # A destination remounted read-only after its bind (the root, /dev: staged trees of
        # mount points, round 15) is not writable.
        sealed = {self.argv[i + 1] for i, a in enumerate(self.argv[:-1]) if a == "--remount-ro"}
        dests = {d for _s, d in self.pairs("--bind", "--bind-try")} - sealed
        return dests | {d for _s, d in self.pairs("--dev-bind") if not d.startswith("/dev/")}


@dataclass
class Docker:
    spec: JobSpec
    opts: dict[str, Any]
    image_volumes: list[str]
    uid_count: int = 1024
    output_fs: bool = True


@dataclass
class Kube:
    spec: JobSpec
    job: dict[str, Any]
    namespace: list[dict[str, Any]]

    @property
    def pod(self) -> dict[str, Any]:
        return self.job["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        return self.pod["containers"][0]

    def volume(self, name: str) -> dict[str, Any]:
        return next(v for v in self.pod["volumes"] if v["name"] == name)


def job_spec(tmp: Path, gpu: int = 0) -> JobSpec:
    for name in ("ds", "code", "input", "out"):
        (tmp / name).mkdir(exist_ok=True)
    return JobSpec(
        job_id="4c1f0a9e2b7d4e8f9a0b1c2d3e4f5a6b",
        project_id="lung",
        image=IMAGE,
        command=["python3", "-m", "seg"],
        datasets=[DatasetMount("lidc", host_path=tmp / "ds", pvc_name="dataset-lidc")],
        output_dir=tmp / "out",
        log_path=tmp / "log",
        cpu=2.0,
        memory_mb=2048,
        gpu=gpu,
        time_limit_s=600,
        max_processes=96,
        code_dir=tmp / "code",
        code_hash="c0de" * 16,
        inputs=[InputMount(INPUT_JOB, tmp / "input", f"/inputs/{INPUT_JOB}")],
        image_config=ImageConfig(volumes=IMAGE_VOLUMES),
    )


def render_local(tmp: Path, spec: JobSpec) -> Local:
    rootfs = tmp / "rootfs"
    for sub in ("usr/bin", "etc", "opt/app"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    (rootfs / "bin").unlink(missing_ok=True)
    (rootfs / "bin").symlink_to("usr/bin")
    executor = LocalExecutor(images_dir=tmp / "images", use_cgroups=False, host_toolchain=False)
    stage = Stage(tmp / "stage")
    limits = job_limits(spec)
    # The cgroup path (not the rlimit fallback): any object stands for the job's cgroup here.
    # The job's own /proc files, staged by the launcher (`Stage.data`).
    fds = {"seccomp": 97, "block": 98}
    files = procview.job_files(spec.cpu, spec.memory_mb << 20)
    argv = executor._argv("bwrap", spec, rootfs, limits, fds, stage, object(), None, files)  # type: ignore[arg-type]
    launcher = launcher_argv(
        stage, [], 0x70000000, 990, 5, 6, argv, sysinfo.helper_argv("python3", 7), limits.cpus
    )
    entries = [e.name for e in rootfs.iterdir()]
    return Local(spec, argv, stage, launcher, entries, executor.log_limit_bytes, executor.uid_range.count)


def render_docker(spec: JobSpec) -> Docker:
    volumes = list(IMAGE_VOLUMES)
    executor = DockerExecutor(client=object())
    proc = Path("/run/tre-proc-view")  # where `write_proc_view` put the job's /proc files
    opts = container_options(spec, uid=10001, gid=10001, image_volumes=volumes, proc_dir=proc)
    return Docker(spec, opts, volumes, executor.uid_range.count, executor.output_fs)


def render_kube(spec: JobSpec) -> Kube:
    settings = KubernetesSettings()
    k8s_spec = JobSpec(**{**spec.__dict__, "code_dir": None})
    return Kube(spec, k8s.job(k8s_spec, settings), k8s.namespace_objects(spec.project_id, settings))


# --- the controls, one check per backend ---------------------------------------------------


def _local_no_network(r: Local) -> bool:
    return r.has("--unshare-all") and "--share-net" not in r.argv


def _docker_no_network(r: Docker) -> bool:
    return r.opts.get("network_mode") == "none" and r.opts.get("network_disabled") is True


def _kube_no_network(r: Kube) -> bool:
    deny = [
        o
        for o in r.namespace
        if o["kind"] == "NetworkPolicy"
        and o["spec"]["podSelector"] == {}
        and set(o["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not o["spec"].get("ingress")
        and not o["spec"].get("egress")
    ]
    return bool(deny) and r.pod.get("hostNetwork") is False


def _local_no_caps(r: Local) -> bool:
    return (
        r.has("--cap-drop", "ALL")
        and "--cap-add" not in r.argv
        and "--inh-caps=-all" in r.launcher
        and "--bounding-set=-all" in r.launcher
    )


def _docker_no_caps(r: Docker) -> bool:
    return r.opts.get("cap_drop") == ["ALL"] and not r.opts.get("cap_add") and not r.opts.get("privileged")


def _kube_no_caps(r: Kube) -> bool:
    sc = r.container.get("securityContext", {})
    caps = sc.get("capabilities", {})
    return caps.get("drop") == ["ALL"] and not caps.get("add") and sc.get("privileged") is False


def _local_seccomp(r: Local) -> bool:
    # bubblewrap loads the filter with no_new_privs set (it has no capability to skip it).
    return "--seccomp" in r.argv


def _docker_seccomp(r: Docker) -> bool:
    opts = [o for o in r.opts.get("security_opt", []) if o.startswith("seccomp")]
    return len(opts) == 1 and opts[0] != "seccomp=unconfined" and not r.opts.get("privileged")


def _kube_seccomp(r: Kube) -> bool:
    pod = r.pod["securityContext"].get("seccompProfile", {}).get("type")
    ctr = r.container["securityContext"].get("seccompProfile", {}).get("type")
    return pod == ctr == "RuntimeDefault"


def _local_no_new_privs(r: Local) -> bool:
    return _local_seccomp(r) and "--reuid=0" not in r.launcher


def _docker_no_new_privs(r: Docker) -> bool:
    return "no-new-privileges:true" in r.opts.get("security_opt", [])


def _kube_no_new_privs(r: Kube) -> bool:
    return r.container["securityContext"].get("allowPrivilegeEscalation") is False


def _local_read_only_root(r: Local) -> bool:
    ro = {d for _s, d in r.pairs("--ro-bind")}
    links = {r.argv[i + 2] for i, a in enumerate(r.argv[:-2]) if a == "--symlink"}
    tops = {f"/{name}" for name in r.rootfs_entries}
    return tops <= ro | links and not tops & r.writable()


def _docker_read_only_root(r: Docker) -> bool:
    return r.opts.get("read_only") is True


def _kube_read_only_root(r: Kube) -> bool:
    return r.container["securityContext"].get("readOnlyRootFilesystem") is True


def _local_non_root(r: Local) -> bool:
    uid = r.argv[r.argv.index("--uid") + 1]
    return uid != "0" and not any(a in ("--reuid=0", "--regid=0") for a in r.launcher)


def _docker_non_root(r: Docker) -> bool:
    user = str(r.opts.get("user", "0"))
    return bool(user) and user.split(":")[0] not in ("0", "root")


def _kube_non_root(r: Kube) -> bool:
    sc = r.container["securityContext"]
    return sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0


def _local_pids(r: Local) -> bool:
    return job_limits(r.spec).max_processes == r.spec.max_processes


def _docker_pids(r: Docker) -> bool:
    return r.opts.get("pids_limit") == r.spec.max_processes


def _kube_pids(r: Kube) -> bool:
    # A pod spec has no process limit; the kubelet's podPidsLimit is node configuration.
    return False


def _local_memory(r: Local) -> bool:
    return job_limits(r.spec).memory_bytes == r.spec.memory_mb * MIB  # swap.max 0 in cgroups.py


def _docker_memory(r: Docker) -> bool:
    m = f"{r.spec.memory_mb}m"
    return r.opts.get("mem_limit") == m and r.opts.get("memswap_limit") == m


def _kube_memory(r: Kube) -> bool:
    res = r.container["resources"]
    m = f"{r.spec.memory_mb}Mi"
    return res["limits"].get("memory") == m == res["requests"].get("memory")


def _local_cpu(r: Local) -> bool:
    return job_limits(r.spec).cpu == r.spec.cpu


def _docker_cpu(r: Docker) -> bool:
    return r.opts.get("nano_cpus") == int(r.spec.cpu * 1e9)


def _kube_cpu(r: Kube) -> bool:
    return r.container["resources"]["limits"].get("cpu") == f"{int(r.spec.cpu * 1000)}m"


def _local_tmp_sized(r: Local) -> bool:
    tmp = [e for e in r.stage.entries if e[0] == "tmpfs" and e[2] == "tmp"]
    return (
        len(tmp) == 1
        and int(tmp[0][1].split(":")[0]) > 0
        and (r.stage.path("tmp"), "/tmp") in r.pairs("--bind")
    )


def _docker_tmp_sized(r: Docker) -> bool:
    return "size=" in r.opts.get("tmpfs", {}).get("/tmp", "")


def _kube_tmp_sized(r: Kube) -> bool:
    return "sizeLimit" in r.volume("tmp").get("emptyDir", {})


def _local_tmp_entries(r: Local) -> bool:
    tmp = [e for e in r.stage.entries if e[0] == "tmpfs" and e[2] == "tmp"]
    return len(tmp) == 1 and int(tmp[0][1].split(":")[1]) > 0


def _docker_tmp_entries(r: Docker) -> bool:
    return "nr_inodes=" in r.opts.get("tmpfs", {}).get("/tmp", "")


def _kube_tmp_entries(r: Kube) -> bool:
    # An emptyDir has no inode bound; its kernel memory is charged to the pod's limit.
    return False


def _local_mounts_read_only(r: Local) -> bool:
    ro = {d for _s, d in r.pairs("--ro-bind")}
    return READ_ONLY <= ro and not READ_ONLY & r.writable()


def _docker_mounts_read_only(r: Docker) -> bool:
    binds = {v["bind"]: v["mode"] for v in r.opts.get("volumes", {}).values()}
    return all(binds.get(d) == "ro" for d in READ_ONLY)


def _kube_mounts_read_only(r: Kube) -> bool:
    mounts = {m["mountPath"]: m for m in r.container["volumeMounts"]}
    return all(mounts.get(d, {}).get("readOnly") is True for d in READ_ONLY)


def _local_only_output_writable(r: Local) -> bool:
    return r.writable() <= WRITABLE


def _docker_only_output_writable(r: Docker) -> bool:
    rw = {v["bind"] for v in r.opts.get("volumes", {}).values() if v["mode"] != "ro"}
    tmpfs = {p for p, o in r.opts.get("tmpfs", {}).items() if not o.startswith("ro,")}
    return rw | tmpfs <= WRITABLE and not r.opts.get("mounts")


def _kube_only_output_writable(r: Kube) -> bool:
    rw = {m["mountPath"] for m in r.container["volumeMounts"] if not m.get("readOnly")}
    return rw <= WRITABLE


def _local_own_namespaces(r: Local) -> bool:
    # --unshare-all: user, ipc, pid, net, uts and cgroup; --disable-userns: no nesting.
    return r.has("--unshare-all") and r.has("--unshare-user") and r.has("--disable-userns")


def _docker_own_namespaces(r: Docker) -> bool:
    o = r.opts
    return (
        o.get("ipc_mode") == "private"
        and o.get("cgroupns") == "private"
        and all(o.get(k) in (None, "") for k in ("pid_mode", "uts_mode", "userns_mode"))
        and o.get("network_mode") == "none"
    )


def _kube_own_namespaces(r: Kube) -> bool:
    p = r.pod
    return (
        p.get("hostPID") is False
        and p.get("hostIPC") is False
        and p.get("hostNetwork") is False
        and p.get("hostUsers", False) is not True
        and not p.get("shareProcessNamespace")
    )


def _local_no_credentials(r: Local) -> bool:
    sources = [s for s, _d in r.pairs("--bind", "--ro-bind", "--dev-bind", "--ro-bind-try")]
    return r.has("--clearenv") and not any("docker.sock" in s or "/var/run" in s for s in sources)


def _docker_no_credentials(r: Docker) -> bool:
    return not any("docker.sock" in s or s.startswith("/var/run") for s in r.opts.get("volumes", {}))


def _kube_no_credentials(r: Kube) -> bool:
    return r.pod.get("automountServiceAccountToken") is False and r.pod.get("enableServiceLinks") is False


def _local_no_core(r: Local) -> bool:
    return "--core=0" in r.argv


def _docker_no_core(r: Docker) -> bool:
    return any(u["Name"] == "core" and u["Hard"] == 0 for u in r.opts.get("ulimits", []))


def _kube_no_core(r: Kube) -> bool:
    return False  # a pod spec sets no rlimits


def _local_no_gpu(r: Local) -> bool:
    return not any("nvidia" in d for _s, d in r.pairs("--dev-bind"))


def _docker_no_gpu(r: Docker) -> bool:
    return "device_requests" not in r.opts and not r.opts.get("devices")


def _kube_no_gpu(r: Kube) -> bool:
    return not any("nvidia" in k for k in r.container["resources"]["limits"])


def _local_log_bounded(r: Local) -> bool:
    return 0 < r.log_limit


def _docker_log_bounded(r: Docker) -> bool:
    cfg = r.opts.get("log_config")
    return cfg is not None and "max-size" in cfg["Config"] and "max-file" in cfg["Config"]


def _kube_log_bounded(r: Kube) -> bool:
    return False  # the kubelet's containerLogMaxSize: node configuration


def _local_image_volumes(r: Local) -> bool:
    # bubblewrap creates nothing for an image's Volumes: only the listed folders are writable.
    return _local_only_output_writable(r)


def _docker_image_volumes(r: Docker) -> bool:
    tmpfs = r.opts.get("tmpfs", {})
    binds = {v["bind"] for v in r.opts.get("volumes", {}).values()}
    return all(v in binds or tmpfs.get(v, "").startswith("ro,") for v in r.image_volumes)


def _kube_image_volumes(r: Kube) -> bool:
    # containerd's CRI gives each a writable host folder unless a mount has that very path.
    volumes = {v["name"]: v for v in r.pod["volumes"]}
    mounts = {m["mountPath"]: m for m in r.container["volumeMounts"]}
    declared = r.spec.image_config.volumes if r.spec.image_config else []
    return bool(declared) and all(
        p in mounts
        and (
            mounts[p].get("readOnly") is True or p in WRITABLE  # our own /output or /tmp covers it
        )
        and ("emptyDir" not in volumes[mounts[p]["name"]] or mounts[p].get("readOnly") is True)
        for p in declared
    )


def _local_own_uid(r: Local) -> bool:
    return r.uid_count > 0


def _docker_own_uid(r: Docker) -> bool:
    return r.uid_count > 0


def _kube_own_uid(r: Kube) -> bool:
    # A kernel of the pod's own (gVisor, Kata: what the admission policy requires), or a
    # user namespace of its own; otherwise every pod of a node is job_uid.
    return r.pod.get("runtimeClassName") in ("gvisor", "kata") or r.pod.get("hostUsers") is False


def _local_own_proc_figures(r: Local) -> bool:
    staged = {f"{r.stage.root}/{name}/f" for kind, _, name in r.stage.entries if kind == "data"}
    bound = {r.argv[i + 2] for i, a in enumerate(r.argv[:-2]) if a == "--ro-bind" and r.argv[i + 1] in staged}
    return {f"/proc/{n}" for n in procview.SYNTHESISED} <= bound


def _docker_own_proc_figures(r: Docker) -> bool:
    binds = {v["bind"]: v["mode"] for v in r.opts.get("volumes", {}).values()}
    return all(binds.get(f"/proc/{n}") == "ro" for n in DOCKER_PROC_FILES)


def _kube_own_kernel(r: Kube) -> bool:
    # gVisor answers /proc and sysinfo(2) from its own kernel, which knows only the pod;
    # Kata runs the pod in a VM of the pod's size. Required by the admission policy.
    return r.pod.get("runtimeClassName") in ("gvisor", "kata")


def _local_host_counters_masked(r: Local) -> bool:
    covered = {d for _s, d in r.pairs("--ro-bind")} | {
        r.argv[i + 1] for i, a in enumerate(r.argv[:-1]) if a == "--tmpfs"
    }
    files, folders = procview.masked()
    return bool(files) and {f"/proc/{n}" for n in files + folders} <= covered


def _docker_host_counters_masked(r: Docker) -> bool:
    # Bound with the job's own (`DOCKER_PROC_FILES`) or masked by the runtime (round 14).
    covered = {v["bind"] for v in r.opts.get("volumes", {}).values()} | set(r.opts.get("masked_paths", ()))
    files, folders = procview.masked()
    return bool(files) and {f"/proc/{n}" for n in files + folders} <= covered


def _local_own_sysinfo(r: Local) -> bool:
    # The helper that hands sysinfo(2) to the worker runs before setpriv drops to the job user.
    launcher = r.launcher
    return sysinfo.HELPER in launcher and launcher.index(sysinfo.HELPER) < launcher.index("--inh-caps=-all")


def _docker_own_sysinfo(r: Docker) -> bool:
    return False  # the engine's seccomp profile cannot answer a call; runsc (gVisor) does


def _local_no_sysfs(r: Local) -> bool:
    return not any(
        d == "/sys" or d.startswith("/sys/") for _s, d in r.pairs("--bind", "--ro-bind", "--dev-bind")
    )


def _docker_no_sysfs(r: Docker) -> bool:
    return r.opts.get("tmpfs", {}).get("/sys", "").startswith("ro,")


def _affinity_size(spec: JobSpec) -> int:
    return procview.job_cpus(spec.cpu, len(os.sched_getaffinity(0)))


def _local_cpu_affinity(r: Local) -> bool:
    # The launcher starts under taskset with the job's CPUs, and its cpuset cgroup holds the
    # same set (the kernel keeps the job in it whatever it asks sched_setaffinity for).
    cpus = job_limits(r.spec).cpus
    launcher = r.launcher
    if "--cpu-list" not in launcher or launcher.index("--cpu-list") > launcher.index("--pdeathsig"):
        return False
    pinned = {int(c) for c in launcher[launcher.index("--cpu-list") + 1].split(",")}
    return len(cpus) == len(pinned) == _affinity_size(r.spec)


def _docker_cpu_affinity(r: Docker) -> bool:
    cpuset = r.opts.get("cpuset_cpus")
    return bool(cpuset) and len(cpuset.split(",")) == _affinity_size(r.spec)


def _local_output_fs(r: Local) -> bool:
    # /output is bound from the stage's "output" entry: the job's output folder, on which
    # `LocalExecutor._run_held` has mounted the ext4 image of the quota (never a plain bind).
    output = [e for e in r.stage.entries if e[2] == "output"]
    return bool(output) and (f"{r.stage.root}/output", "/output") in r.pairs("--bind")


def _docker_output_fs(r: Docker) -> bool:
    return r.output_fs  # `DockerExecutor._mount_output`, on by default for a root worker


def _kube_output_fs(r: Kube) -> bool:
    return False  # a pod names a claim; whether its statfs is its own is the storage class's


def _kube_cpu_affinity(r: Kube) -> bool:
    return False  # a pod spec names no CPUs: the kubelet's static CPU manager policy does


Check = Callable[[Any], bool]
CONTROLS: dict[str, tuple[Check, Check, Check]] = {
    "no network": (_local_no_network, _docker_no_network, _kube_no_network),
    "no capabilities": (_local_no_caps, _docker_no_caps, _kube_no_caps),
    "a seccomp filter": (_local_seccomp, _docker_seccomp, _kube_seccomp),
    "no privilege escalation": (_local_no_new_privs, _docker_no_new_privs, _kube_no_new_privs),
    "read-only root": (_local_read_only_root, _docker_read_only_root, _kube_read_only_root),
    "non-root user": (_local_non_root, _docker_non_root, _kube_non_root),
    "process limit": (_local_pids, _docker_pids, _kube_pids),
    "memory limit, no swap": (_local_memory, _docker_memory, _kube_memory),
    "cpu limit": (_local_cpu, _docker_cpu, _kube_cpu),
    "CPU affinity of the CPU limit": (_local_cpu_affinity, _docker_cpu_affinity, _kube_cpu_affinity),
    "/output a file system of the quota's own": (_local_output_fs, _docker_output_fs, _kube_output_fs),
    "sized /tmp": (_local_tmp_sized, _docker_tmp_sized, _kube_tmp_sized),
    "/tmp entries bounded": (_local_tmp_entries, _docker_tmp_entries, _kube_tmp_entries),
    "data, code and inputs read-only": (
        _local_mounts_read_only,
        _docker_mounts_read_only,
        _kube_mounts_read_only,
    ),
    "only /output and scratch writable": (
        _local_only_output_writable,
        _docker_only_output_writable,
        _kube_only_output_writable,
    ),
    "own namespaces": (_local_own_namespaces, _docker_own_namespaces, _kube_own_namespaces),
    "no platform credentials": (_local_no_credentials, _docker_no_credentials, _kube_no_credentials),
    "no core dumps": (_local_no_core, _docker_no_core, _kube_no_core),
    "no GPU unless asked": (_local_no_gpu, _docker_no_gpu, _kube_no_gpu),
    "log kept on the host bounded": (_local_log_bounded, _docker_log_bounded, _kube_log_bounded),
    "image volumes not writable": (_local_image_volumes, _docker_image_volumes, _kube_image_volumes),
    "per-user kernel counters of the job's own": (_local_own_uid, _docker_own_uid, _kube_own_uid),
    "/proc meminfo, cpuinfo, stat, loadavg, uptime of the job's own": (
        _local_own_proc_figures,
        _docker_own_proc_figures,
        _kube_own_kernel,
    ),
    "no host /sys": (_local_no_sysfs, _docker_no_sysfs, _kube_own_kernel),
    "sysinfo(2) of the job's own": (_local_own_sysinfo, _docker_own_sysinfo, _kube_own_kernel),
    "other host-wide /proc counters masked": (
        _local_host_counters_masked,
        _docker_host_counters_masked,
        _kube_own_kernel,
    ),
}
BACKENDS = ("local", "docker", "kubernetes")

# Controls a backend cannot carry in what it generates, with the words of SECURITY.md's
# residual risk that says what the operator must do instead.
GAPS: dict[tuple[str, str], str] = {
    ("process limit", "kubernetes"): "podPidsLimit",
    ("/tmp entries bounded", "kubernetes"): "an emptyDir has no entry bound",
    ("no core dumps", "kubernetes"): "core dumps of a pod",
    ("log kept on the host bounded", "kubernetes"): "containerLogMaxSize",
    ("sysinfo(2) of the job's own", "docker"): "still answers from the host on the Docker backend",
    ("CPU affinity of the CPU limit", "kubernetes"): "cpuManagerPolicy: static",
    ("/output a file system of the quota's own", "kubernetes"): "provisions a file system per claim",
}


@pytest.fixture
def rendered(tmp_path: Path) -> dict[str, Any]:
    spec = job_spec(tmp_path)
    return {
        "local": render_local(tmp_path, spec),
        "docker": render_docker(spec),
        "kubernetes": render_kube(spec),
    }


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_every_backend_keeps_the_control_or_says_why_not(control: str, rendered: dict[str, Any]) -> None:
    if control == "per-user kernel counters of the job's own" and os.geteuid() != 0:
        pytest.skip("the executors take uids of their own only when the worker is root")
    if control == "/output a file system of the quota's own" and os.geteuid() != 0:
        pytest.skip("the Docker executor mounts the job's file system only when the worker is root")
    security = (ROOT / "SECURITY.md").read_text()
    for backend, check in zip(BACKENDS, CONTROLS[control], strict=True):
        enforced = check(rendered[backend])
        gap = GAPS.get((control, backend))
        if gap is None:
            assert enforced, f"the {backend} backend dropped a control the others keep: {control}"
        else:
            assert not enforced, f"{control} on {backend} is enforced now: remove it from GAPS"
            assert gap in security, f"SECURITY.md must say what replaces {control!r} on {backend}"
    assert sum(1 for b in BACKENDS if (control, b) not in GAPS) >= 2


def test_a_gpu_job_gets_a_gpu_on_every_backend(tmp_path: Path) -> None:
    spec = job_spec(tmp_path, gpu=1)
    assert not _docker_no_gpu(render_docker(spec))
    assert not _kube_no_gpu(render_kube(spec))
    # The other controls hold for a GPU job as well.
    for control, (_l, d, k) in CONTROLS.items():
        if control in ("no GPU unless asked", "no host /sys"):  # a GPU job's driver reads /sys
            continue
        assert (control, "docker") in GAPS or d(render_docker(spec)), control
        assert (control, "kubernetes") in GAPS or k(render_kube(spec)), control


def _without(items: list[str], *drop: str) -> list[str]:
    out = list(items)
    for word in drop:
        out.remove(word)
    return out


def test_the_checks_notice_a_dropped_control(rendered: dict[str, Any]) -> None:
    local: Local = rendered["local"]
    docker: Docker = rendered["docker"]
    kube: Kube = rendered["kubernetes"]

    def local_with(argv: list[str] | None = None, launcher: list[str] | None = None) -> Local:
        return Local(
            local.spec, argv or local.argv, local.stage, launcher or local.launcher, local.rootfs_entries, 1
        )

    assert not _local_no_network(local_with(local.argv + ["--share-net"]))
    assert not _local_seccomp(local_with(_without(local.argv, "--seccomp")))
    assert not _local_no_caps(local_with(launcher=_without(local.launcher, "--inh-caps=-all")))
    assert not _local_no_core(local_with(_without(local.argv, "--core=0")))
    i = local.argv.index("/data") - 2
    weakened = local.argv[:i] + ["--bind"] + local.argv[i + 1 :]
    assert not _local_mounts_read_only(local_with(weakened)) and not _local_only_output_writable(
        local_with(weakened)
    )

    def docker_with(**changes: Any) -> Docker:
        opts = {**copy.deepcopy(docker.opts), **changes}
        return Docker(docker.spec, {k: v for k, v in opts.items() if v is not None}, docker.image_volumes)

    assert not _docker_seccomp(docker_with(security_opt=["no-new-privileges:true"]))
    assert not _docker_seccomp(docker_with(security_opt=["no-new-privileges:true", "seccomp=unconfined"]))
    assert not _docker_own_namespaces(docker_with(cgroupns=None))
    assert not _docker_own_namespaces(docker_with(pid_mode="host"))
    assert not _docker_tmp_entries(docker_with(tmpfs={"/tmp": "rw,size=256m"}))
    assert not _docker_pids(docker_with(pids_limit=None))
    assert not _docker_image_volumes(docker_with(tmpfs={"/tmp": docker.opts["tmpfs"]["/tmp"]}))
    assert not _docker_read_only_root(docker_with(read_only=False))
    assert not _docker_cpu_affinity(docker_with(cpuset_cpus=None))
    assert not _docker_output_fs(Docker(docker.spec, docker.opts, docker.image_volumes, output_fs=False))
    i = local.argv.index("/output") - 2
    assert not _local_output_fs(
        local_with(local.argv[:i] + ["--bind", "/srv/out", "/output"] + local.argv[i + 3 :])
    )
    assert not _local_cpu_affinity(local_with(launcher=local.launcher[3:]))  # taskset dropped

    def kube_with(edit: Callable[[dict[str, Any]], None]) -> Kube:
        job = copy.deepcopy(kube.job)
        edit(job["spec"]["template"]["spec"])
        return Kube(kube.spec, job, kube.namespace)

    assert not _kube_no_credentials(kube_with(lambda p: p.update(automountServiceAccountToken=True)))
    assert not _kube_own_namespaces(kube_with(lambda p: p.update(hostPID=True)))
    assert not _kube_seccomp(kube_with(lambda p: p["containers"][0]["securityContext"].pop("seccompProfile")))
    assert not _kube_only_output_writable(
        kube_with(lambda p: p["containers"][0]["volumeMounts"][0].update(readOnly=False))
    )
    assert not _docker_own_uid(Docker(docker.spec, docker.opts, docker.image_volumes, 0))
    assert not _kube_own_uid(kube_with(lambda p: p.pop("runtimeClassName")))
    assert not _kube_image_volumes(
        kube_with(lambda p: p["containers"][0]["volumeMounts"].pop())  # the last mask's mount
    )
    proc_data = [
        i for i, a in enumerate(local.argv) if a == "--ro-bind" and "/proc/meminfo" == local.argv[i + 2]
    ]
    assert len(proc_data) == 1
    i = proc_data[0]
    assert not _local_own_proc_figures(local_with(local.argv[:i] + local.argv[i + 3 :]))
    i = local.argv.index("/proc/locks") - 2
    assert not _local_host_counters_masked(local_with(local.argv[:i] + local.argv[i + 3 :]))
    assert not _docker_own_proc_figures(
        Docker(docker.spec, container_options(docker.spec, uid=10001, gid=10001), docker.image_volumes)
    )
    without_vmstat = [p for p in docker.opts["masked_paths"] if p != "/proc/vmstat"]
    assert not _docker_host_counters_masked(docker_with(masked_paths=without_vmstat))
    assert not _local_own_sysinfo(local_with(launcher=[a for a in local.launcher if a != sysinfo.HELPER]))
    assert not _docker_no_sysfs(docker_with(tmpfs={"/tmp": docker.opts["tmpfs"]["/tmp"]}))
    assert not _local_no_sysfs(local_with(local.argv[:2] + ["--ro-bind", "/sys", "/sys"] + local.argv[2:]))
    assert not _kube_own_kernel(kube_with(lambda p: p.pop("runtimeClassName")))
    assert not _kube_no_network(
        Kube(kube.spec, kube.job, [o for o in kube.namespace if o["kind"] != "NetworkPolicy"])
    )
