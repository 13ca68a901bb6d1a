"""Docker executor: the exact hardening options (pure function), the HTTP body the Docker SDK
really sends, and the run/OOM/timeout/cancel flow against a fake Docker Engine.

The fake engine is a real HTTP server on 127.0.0.1 answering the Engine API paths the SDK
uses (containers create/start/wait/logs/json/kill/delete, images) with the Engine's JSON
shapes and multiplexed log framing; the official `docker` SDK talks to it over TCP. A live
run against a real engine is at the end, skipped where no Docker engine runs.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import docker
import pytest
from docker.types import DeviceRequest, LogConfig, Ulimit

from tre.executors import docker as docker_executor
from tre.executors import procview
from tre.executors.base import DatasetMount, ExecutorError, InputMount, JobSpec, RunControl
from tre.executors.docker import DockerExecutor, container_options
from tre.executors.jobuids import UidRange

IMAGE = "registry.example.org/tre/job@sha256:" + "ab" * 32


def make_spec(tmp_path: Path, **kw: Any) -> JobSpec:
    base: dict[str, Any] = dict(
        job_id="j1",
        project_id="p1",
        image=IMAGE,
        command=["python", "-m", "analysis"],
        datasets=[DatasetMount("ds1", host_path=tmp_path / "ds1", mount_path="/data")],
        output_dir=tmp_path / "out",
        log_path=tmp_path / "job.log",
        cpu=1.5,
        memory_mb=2048,
        time_limit_s=60,
        max_processes=128,
        env={"SEED": "7"},
    )
    base.update(kw)
    return JobSpec(**base)


def test_container_options_are_exactly_the_hardened_set(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, gpu=2)
    opts = container_options(spec, uid=10001, gid=10002, tmp_size_mb=128, proc_dir=tmp_path / "proc")
    # The job's CPUs: its limit rounded up, drawn from the worker's own (redteam round 13).
    cpuset = {int(c) for c in opts.pop("cpuset_cpus").split(",")}
    # Every host-wide /proc entry but the bound files (redteam round 14; tested below).
    assert opts.pop("masked_paths") == docker_executor.masked_paths()
    assert opts.pop("readonly_paths") == list(docker_executor.ENGINE_READONLY_PATHS)
    assert len(cpuset) == procview.job_cpus(1.5, len(os.sched_getaffinity(0)))
    assert cpuset <= os.sched_getaffinity(0)
    assert opts == {
        "image": IMAGE,
        "command": ["python", "-m", "analysis"],
        "name": "tre-job-j1",
        "hostname": "tre-sandbox",
        "labels": {"tre.job-id": "j1", "tre.project-id": "p1"},
        "user": "10001:10002",
        "working_dir": "/output",
        "environment": {
            "SEED": "7",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "TRE_OUTPUT_DIR": "/output",
            "TRE_JOB_ID": "j1",
        },
        "network_mode": "none",
        "network_disabled": True,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true", "seccomp=builtin"],
        "pids_limit": 128,
        "mem_limit": "2048m",
        "memswap_limit": "2048m",
        "nano_cpus": 1_500_000_000,
        "ipc_mode": "private",
        "cgroupns": "private",
        "init": True,
        "ulimits": [Ulimit(name="core", soft=0, hard=0)],
        "tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=128m,nr_inodes=16384"},  # a GPU job keeps /sys
        "healthcheck": {"test": ["NONE"]},
        "log_config": LogConfig(type="json-file", config={"max-size": "64m", "max-file": "2"}),
        "volumes": {
            str(tmp_path / "ds1"): {"bind": "/data", "mode": "ro"},
            str(tmp_path / "out"): {"bind": "/output", "mode": "rw"},
            **{
                str(tmp_path / "proc" / name): {"bind": f"/proc/{name}", "mode": "ro"}
                for name in ("cpuinfo", "loadavg", "meminfo", "stat", "uptime", "diskstats", "swaps")
            },
            **{
                str(tmp_path / "proc" / "etc" / name): {"bind": f"/etc/{name}", "mode": "ro"}
                for name in ("hosts", "hostname", "resolv.conf")
            },
        },
        "device_requests": [DeviceRequest(driver="nvidia", count=2, capabilities=[["gpu"]])],
        "detach": True,
        "stdin_open": False,
        "tty": False,
    }
    assert not any("docker.sock" in k for k in opts["volumes"])


def test_a_cpu_job_has_no_sysfs(tmp_path: Path) -> None:
    """Redteam round 12: the engine's read-only /sys is the host's: CPU clocks, disk I/O
    counts and file-system write totals, live. A job without GPUs gets an empty read-only
    tmpfs there instead (the local sandbox has no /sys at all)."""
    opts = container_options(make_spec(tmp_path), uid=10001, gid=10002)
    # Entries bounded: a tmpfs without nr_inodes tells statfs half the host's RAM (round 15).
    assert opts["tmpfs"]["/sys"] == "ro,noexec,nosuid,nodev,size=4k,nr_inodes=16"
    assert "/sys" not in container_options(make_spec(tmp_path, gpu=1), uid=10001, gid=10002)["tmpfs"]


def test_input_jobs_are_read_only_binds_at_their_own_path(tmp_path: Path) -> None:
    a = "a" * 32
    spec = make_spec(tmp_path, inputs=[InputMount(a, tmp_path / "jobs" / a / "output", f"/inputs/{a}")])
    volumes = container_options(spec, uid=1, gid=1)["volumes"]
    assert volumes[str(tmp_path / "jobs" / a / "output")] == {"bind": f"/inputs/{a}", "mode": "ro"}
    assert [v for v in volumes.values() if v["mode"] == "rw"] == [{"bind": "/output", "mode": "rw"}]
    with pytest.raises(ExecutorError, match="/inputs/<its id>"):
        container_options(make_spec(tmp_path, inputs=[InputMount(a, tmp_path, "/code")]), uid=1, gid=1)


def test_cpu_job_has_no_gpu_and_runtime_maps_from_policy(tmp_path: Path) -> None:
    opts = container_options(make_spec(tmp_path, runtime_class="gvisor"), uid=1, gid=1)
    assert "device_requests" not in opts and opts["runtime"] == "runsc"


def test_unpinned_image_and_pathless_dataset_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="pinned"):
        container_options(make_spec(tmp_path, image="python:3.11"), uid=1, gid=1)
    with pytest.raises(ExecutorError, match="host path"):
        container_options(make_spec(tmp_path, datasets=[DatasetMount("d", pvc_name="x")]), uid=1, gid=1)


# --- a fake Docker Engine ------------------------------------------------------------------


class Engine:
    def __init__(
        self,
        exit_code: int = 0,
        oom: bool = False,
        runs_for: float = 0.0,
        logs: bytes = b"",
        has_image: bool = True,
        volumes: dict[str, Any] | None = None,
    ) -> None:
        self.exit_code, self.oom, self.runs_for, self.logs = exit_code, oom, runs_for, logs
        self.has_image, self.volumes = has_image, volumes
        self.calls: list[tuple[str, str, Any]] = []
        self.started_at: float | None = None
        self.killed = False
        self.removed = False
        self.user = ""  # the container's Config.User, as create recorded it
        self.kept_jobs: set[str] = set()  # jobs whose containers the engine still has, by name
        # Docker's format: RFC 3339 with nanoseconds.
        self.started_wall = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"

    def running(self) -> bool:
        return (
            self.started_at is not None
            and not self.killed
            and time.monotonic() - self.started_at < self.runs_for
        )

    def state(self) -> dict[str, Any]:
        running = self.running()
        return {
            "Status": "running" if running else "exited",
            "Running": running,
            "OOMKilled": self.oom and not running,
            "ExitCode": 0 if running else (137 if self.killed or self.oom else self.exit_code),
            "StartedAt": self.started_wall if self.started_at else "0001-01-01T00:00:00Z",
        }


def make_handler(engine: Engine) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else None

        def _send(self, code: int, obj: Any = None, ctype: str = "application/json") -> None:
            data = b"" if obj is None else (obj if isinstance(obj, bytes) else json.dumps(obj).encode())
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            path = url.path.split("/", 2)[2] if url.path.startswith("/v1.") else url.path.lstrip("/")
            body = self._body()
            engine.calls.append((method, path, body if body is not None else url.query))
            if method == "POST" and path == "images/create":  # a pull
                engine.has_image = True
                return self._send(200, {"status": "pulled"})
            if method == "GET" and path.startswith("images/"):
                if not engine.has_image:
                    return self._send(404, {"message": "No such image"})
                config = {"Volumes": engine.volumes, "Healthcheck": {"Test": ["CMD", "sh", "-c", "x"]}}
                return self._send(
                    200, {"Id": "sha256:" + "cd" * 32, "RepoDigests": [IMAGE], "Config": config}
                )
            if method == "POST" and path == "containers/create":
                return self._send(201, {"Id": "c0ffee", "Warnings": []})
            if method == "GET" and path == "containers/c0ffee/json":
                return self._send(
                    200,
                    {
                        "Id": "c0ffee",
                        "Name": "/tre-job-j1",
                        "Config": {"Tty": False, "User": engine.user},
                        "State": engine.state(),
                    },
                )
            if method == "GET" and path.removeprefix("containers/tre-job-").removesuffix("/json") in (
                engine.kept_jobs
            ):
                return self._send(200, {"Id": "c0ffee", "Name": path.split("/")[1], "State": engine.state()})
            if method == "POST" and path == "containers/c0ffee/start":
                engine.started_at = time.monotonic()
                return self._send(204)
            if method == "POST" and path == "containers/c0ffee/wait":
                while engine.running():
                    time.sleep(0.05)
                return self._send(200, {"StatusCode": engine.state()["ExitCode"], "Error": None})
            if method == "POST" and path == "containers/c0ffee/kill":
                engine.killed = True
                return self._send(204)
            if method == "DELETE" and path == "containers/c0ffee":
                engine.removed = True
                return self._send(204)
            if method == "GET" and path == "containers/c0ffee/logs":
                assert parse_qs(url.query).get("follow") == ["1"]
                frame = struct.pack(">BxxxL", 1, len(engine.logs)) + engine.logs
                return self._send(200, frame, "application/vnd.docker.multiplexed-stream")
            if path.startswith("containers/"):
                return self._send(404, {"message": f"No such container: {path.split('/')[1]}"})
            return self._send(404, {"message": f"no route {method} {path}"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return H


@pytest.fixture
def engine_client():
    servers: list[ThreadingHTTPServer] = []

    def start(engine: Engine) -> docker.DockerClient:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(engine))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return docker.DockerClient(base_url=f"tcp://127.0.0.1:{httpd.server_address[1]}", version="1.45")

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_run_sends_hardened_host_config_and_collects_logs(tmp_path: Path, engine_client: Any) -> None:
    engine = Engine(exit_code=0, runs_for=0.3, logs=b"hello from the job\n")
    spec = make_spec(tmp_path, gpu=1)
    started: list[str] = []
    result = DockerExecutor(engine_client(engine)).run(spec, RunControl(on_started=started.append))
    assert (result.state, result.exit_code) == ("succeeded", 0)
    assert started == ["c0ffee"] and engine.removed
    assert spec.log_path.read_bytes() == b"hello from the job\n"
    create = next(b for m, p, b in engine.calls if p == "containers/create")
    hc = create["HostConfig"]
    assert hc["NetworkMode"] == "none" and hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and hc["SecurityOpt"] == ["no-new-privileges:true", "seccomp=builtin"]
    assert hc["CgroupnsMode"] == "private"
    assert hc["Tmpfs"]["/tmp"] == "rw,noexec,nosuid,nodev,size=256m,nr_inodes=32768"
    assert hc["PidsLimit"] == 128 and hc["Memory"] == 2048 * 1024 * 1024 == hc["MemorySwap"]
    assert hc["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": 1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert str(tmp_path / "ds1") + ":/data:ro" in hc["Binds"]
    assert hc["Ulimits"] == [{"Name": "core", "Soft": 0, "Hard": 0}]
    assert create["User"].count(":") == 1 and create["NetworkDisabled"] is True


def test_the_container_reads_its_own_proc_figures_not_the_hosts(tmp_path: Path, engine_client: Any) -> None:
    """Redteam round 12: /proc/meminfo, cpuinfo, stat, loadavg, uptime and diskstats of a
    container are the host's, moving with every other job. The executor binds files of the
    job's own over them (the paths runc allows inside /proc), written before the container
    starts and removed with it."""
    engine = Engine(exit_code=0, runs_for=0.6)
    spec = make_spec(tmp_path, cpu=1.5, memory_mb=768)
    seen: dict[str, bytes] = {}
    real_create = docker_executor.create_container

    def create(client: Any, opts: dict[str, Any]) -> Any:  # the files as the engine finds them
        for source, bind in opts["volumes"].items():
            if bind["bind"].startswith("/proc/"):
                seen[bind["bind"]] = Path(source).read_bytes()
                seen["folder"] = str(Path(source).parent).encode()
        return real_create(client, opts)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(docker_executor, "create_container", create)
        DockerExecutor(engine_client(engine)).run(spec, RunControl())
    binds = next(b for m, p, b in engine.calls if p == "containers/create")["HostConfig"]["Binds"]
    folder = Path(seen["folder"].decode())
    for name in ("cpuinfo", "meminfo", "stat", "loadavg", "uptime", "diskstats", "swaps"):
        assert f"{folder / name}:/proc/{name}:ro" in binds
    assert f"MemTotal:         {768 * 1024} kB".encode() in seen["/proc/meminfo"]
    assert seen["/proc/stat"].count(b"\ncpu") == min(2, len(os.sched_getaffinity(0)))
    assert b"cpu MHz" not in seen["/proc/cpuinfo"] and seen["/proc/diskstats"] == seen["/proc/swaps"] == b""
    assert seen["/proc/loadavg"] == b"0.00 0.00 0.00 1/1 1\n"
    assert not folder.exists()  # removed with the container


def test_the_container_is_told_nothing_of_the_hosts_resolver_or_its_own_name(
    tmp_path: Path, engine_client: Any
) -> None:
    """Redteam round 15: the engine writes /etc/resolv.conf, /etc/hosts and /etc/hostname
    into every container, `--network none` included; its resolv.conf is a copy of the
    host's (the site's search domains and resolvers) and its hostname the container's id.
    The executor binds fixed files of its own at those paths (the engine writes none where
    the container has a mount) and names one hostname for every job, as the local sandbox
    and Kubernetes do; the files go with the container."""
    engine = Engine(exit_code=0, runs_for=0.3)
    seen: dict[str, bytes] = {}
    real_create = docker_executor.create_container

    def create(client: Any, opts: dict[str, Any]) -> Any:  # the files as the engine finds them
        for source, bind in opts["volumes"].items():
            if bind["bind"].startswith("/etc/"):
                seen[bind["bind"]] = Path(source).read_bytes()
        return real_create(client, opts)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(docker_executor, "create_container", create)
        DockerExecutor(engine_client(engine)).run(make_spec(tmp_path), RunControl())
    body = next(b for m, p, b in engine.calls if p == "containers/create")
    assert body["Hostname"] == "tre-sandbox"
    targets = {b.split(":")[1]: b for b in body["HostConfig"]["Binds"]}
    for name in ("/etc/resolv.conf", "/etc/hosts", "/etc/hostname"):
        assert targets[name].endswith(":ro"), name
    assert seen["/etc/resolv.conf"] == b"nameserver 127.0.0.1\n"
    assert seen["/etc/hostname"] == b"tre-sandbox\n"
    assert seen["/etc/hosts"] == b"127.0.0.1 localhost tre-sandbox\n::1 localhost\n"
    assert not Path(targets["/etc/hosts"].split(":")[0]).exists()  # removed with the container


def test_the_container_cannot_read_the_hosts_other_proc_counters(tmp_path: Path, engine_client: Any) -> None:
    """Redteam round 14: runc lets a bind cover only seven files inside /proc, so a
    container still read the host's `vmstat`, `interrupts`, `softirqs`, `pressure/*`,
    `locks`, `cgroups`, `zoneinfo`, `buddyinfo`, `/proc/sys/fs/file-nr` ..., live: each moves
    with every other job (tests/sandbox/test_sandbox_proc_counters.py measures which). The
    engine masks whatever the HostConfig's `MaskedPaths` names (after the mounts, as
    `/dev/null` or an empty read-only tmpfs), so the body sent names every entry the local
    sandbox masks, deny by default from this host's /proc, and the engine's own list."""
    engine = Engine(exit_code=0, runs_for=0.1)
    DockerExecutor(engine_client(engine)).run(make_spec(tmp_path), RunControl())
    hc = next(b for m, p, b in engine.calls if p == "containers/create")["HostConfig"]
    masked = set(hc["MaskedPaths"])
    files, folders = procview.masked()
    bound = {f"/proc/{n}" for n in docker_executor.DOCKER_PROC_FILES}
    expected = {f"/proc/{n}" for n in files + folders} - bound
    assert expected <= masked
    for name in ("vmstat", "interrupts", "softirqs", "pressure", "locks", "cgroups", "sys/fs/file-nr"):
        if (Path("/proc") / name).exists():
            assert f"/proc/{name}" in masked, name
    # Nothing the engine hides by itself is given back; the job's own files stay readable.
    assert {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"} <= masked
    assert not {f"/proc/{n}" for n in docker_executor.DOCKER_PROC_FILES} & masked
    assert not {p for p in masked if p.startswith(("/proc/self", "/proc/net", "/proc/1"))}
    assert "/proc/sys" in hc["ReadonlyPaths"]


def test_masked_paths_are_deny_by_default(tmp_path: Path) -> None:
    """An entry a newer kernel adds to /proc is masked too; a process folder, a link and
    the kept entries are not."""
    fake = tmp_path / "proc"
    for name in ("newcounter", "vmstat", "meminfo", "version"):
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text("1\n")
    (fake / "42").mkdir()
    (fake / "pressure").mkdir()
    (fake / "self").symlink_to("42")
    (fake / "sys" / "fs").mkdir(parents=True)
    (fake / "sys" / "fs" / "file-nr").write_text("1 0 9\n")
    masked = set(docker_executor.masked_paths(fake))
    assert {"/proc/newcounter", "/proc/vmstat", "/proc/pressure", "/proc/sys/fs/file-nr"} <= masked
    assert not {"/proc/meminfo", "/proc/version", "/proc/42", "/proc/self"} & masked


def test_the_engine_keeps_no_more_of_the_log_than_tre_reads(tmp_path: Path, engine_client: Any) -> None:
    """Redteam round 10: tre read at most its log limit from a container, but the engine's
    default log driver (json-file, no rotation) kept everything the job printed on the
    host's disk under /var/lib/docker for as long as the container lived: a job printing
    flat out for its time limit could fill it. The engine now rotates at the limit."""
    engine = Engine(exit_code=0, runs_for=0.1, logs=b"x\n")
    DockerExecutor(engine_client(engine), log_limit_bytes=3 * 1024 * 1024 + 1).run(
        make_spec(tmp_path), RunControl()
    )
    create = next(b for m, p, b in engine.calls if p == "containers/create")
    assert create["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "4m", "max-file": "2"},
    }


def test_oom_killed_is_reported(tmp_path: Path, engine_client: Any) -> None:
    result = DockerExecutor(engine_client(Engine(oom=True))).run(make_spec(tmp_path), RunControl())
    assert result.state == "failed" and result.exit_code == 137 and "OOMKilled" in result.reason


def test_nonzero_exit_and_timeout_and_cancel(tmp_path: Path, engine_client: Any) -> None:
    r = DockerExecutor(engine_client(Engine(exit_code=4))).run(make_spec(tmp_path), RunControl())
    assert (r.state, r.exit_code) == ("failed", 4)

    slow = Engine(runs_for=30)
    r = DockerExecutor(engine_client(slow)).run(make_spec(tmp_path, time_limit_s=1), RunControl())
    assert r.state == "timed_out" and slow.killed and slow.removed

    slow = Engine(runs_for=30)
    r = DockerExecutor(engine_client(slow)).run(make_spec(tmp_path), RunControl(is_cancelled=lambda: True))
    assert r.state == "cancelled" and slow.killed


def test_outputs_over_limit_fail(tmp_path: Path, engine_client: Any) -> None:
    spec = make_spec(tmp_path, output_limit_mb=1)
    spec.output_dir.mkdir()
    (spec.output_dir / "big.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
    r = DockerExecutor(engine_client(Engine())).run(spec, RunControl())
    assert r.state == "failed" and "exceed" in r.reason


def test_reattach_follows_a_container_left_by_a_dead_worker(tmp_path: Path, engine_client: Any) -> None:
    engine = Engine(exit_code=0, runs_for=0.3, logs=b"still going\n")
    engine.started_at = time.monotonic()  # started by the previous worker
    spec = make_spec(tmp_path)
    ex = DockerExecutor(engine_client(engine))
    assert ex.supports_reattach
    result = ex.reattach(spec, "c0ffee", RunControl())
    assert result.state == "succeeded" and spec.log_path.read_bytes() == b"still going\n"
    assert not any(p == "containers/create" for _, p, _ in engine.calls) and engine.removed
    gone = ex.reattach(spec, "deadbeef", RunControl())
    assert gone.state == "failed" and "no longer exists" in gone.reason


def test_each_container_runs_as_a_uid_of_its_own(tmp_path: Path, engine_client: Any) -> None:
    """Redteam round 11: every container ran as uid 10001 in the host's user namespace, so
    concurrent jobs of any projects shared that user's kernel counters (pending signals,
    inotify instances): one job filling them made those calls fail in the others, the local
    sandbox's round-10 finding on the Docker backend. Each container now holds a uid of its
    own from the sandbox uid range until it is removed."""
    base = 2_000_000_000
    rng = UidRange(base=base, count=4, lock_dir=tmp_path / "uids", subid_files=())
    engine = Engine(exit_code=0, runs_for=0.3, logs=b"x\n")
    seen: list[bool] = []

    owners: list[int] = []

    def probe() -> None:  # while the container runs, its uid is not to be had
        with rng.hold_again(base + 1) as got:
            seen.append(got)
        owners.append(spec.output_dir.stat().st_uid)

    spec = make_spec(tmp_path)
    # What the container wrote (here before it starts): private, setuid, a private folder.
    spec.output_dir.mkdir()
    (spec.output_dir / "private.csv").write_text("a,b\n")
    (spec.output_dir / "private.csv").chmod(0o600)
    (spec.output_dir / "tool").write_text("#!/bin/sh\n")
    (spec.output_dir / "tool").chmod(0o4755)
    (spec.output_dir / "sub").mkdir(mode=0o700)
    (spec.output_dir / "link").symlink_to("/etc/passwd")
    with rng.hold(1) as other:  # a job already running
        assert other == base
        result = DockerExecutor(engine_client(engine), uid_range=rng).run(spec, RunControl(heartbeat=probe))
    assert result.state == "succeeded"
    create = next(b for m, p, b in engine.calls if p == "containers/create")
    assert create["User"] == f"{base + 1}:10001"
    assert owners and set(owners) == {base + 1}
    assert seen and not any(seen)
    # Afterwards nothing is left owned by the uid the next container gets, and a later job
    # (another uid, the same group) can read what this one wrote 0600.
    out = spec.output_dir
    modes = {
        p.name: (p.lstat().st_uid, p.lstat().st_gid, oct(p.lstat().st_mode & 0o7777)) for p in out.iterdir()
    }
    assert modes["private.csv"] == (10001, 10001, "0o640")
    assert modes["tool"] == (10001, 10001, "0o755")
    assert modes["sub"] == (10001, 10001, "0o750")
    assert modes["link"][:2] == (10001, 10001)
    assert (out.stat().st_uid, oct(out.stat().st_mode & 0o777)) == (10001, "0o750")
    assert os.stat("/etc/passwd").st_uid == 0  # the link was not followed
    with rng.hold(1) as a, rng.hold(1) as b:  # both released when their jobs ended
        assert (a, b) == (base, base + 1)
    off = Engine(exit_code=0)
    DockerExecutor(engine_client(off), uid_range=UidRange(count=0)).run(make_spec(tmp_path), RunControl())
    assert next(b for m, p, b in off.calls if p == "containers/create")["User"] == "10001:10001"


def test_reattach_holds_the_containers_uid_again(tmp_path: Path, engine_client: Any) -> None:
    base = 2_000_000_000
    rng = UidRange(base=base, count=4, lock_dir=tmp_path / "uids", subid_files=())
    engine = Engine(exit_code=0, runs_for=0.3)
    engine.started_at = time.monotonic()
    engine.user = f"{base + 2}:10001"
    seen: list[bool] = []

    def probe() -> None:
        with rng.hold_again(base + 2) as got:
            seen.append(got)

    ex = DockerExecutor(engine_client(engine), uid_range=rng)
    assert ex.reattach(make_spec(tmp_path), "c0ffee", RunControl(heartbeat=probe)).state == "succeeded"
    assert seen and not any(seen)
    with rng.hold_again(base + 2) as got:
        assert got


def test_reattach_counts_time_already_spent(tmp_path: Path, engine_client: Any) -> None:
    engine = Engine(runs_for=30)
    engine.started_at = time.monotonic()
    engine.started_wall = "2025-06-02T10:15:04.123456789Z"  # long before the 60 s limit ran out
    result = DockerExecutor(engine_client(engine)).reattach(make_spec(tmp_path), "c0ffee", RunControl())
    assert result.state == "timed_out" and engine.killed


def test_docker_timestamps_parse_with_nanoseconds() -> None:
    from tre.executors.docker import _parse_docker_time

    assert _parse_docker_time("2025-06-02T10:15:04.123456789Z") == pytest.approx(1748859304.123456)
    assert _parse_docker_time("0001-01-01T00:00:00Z") is None


def _engine_reachable() -> str | None:
    try:
        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        return str(exc)
    return None


@pytest.mark.skipif(_engine_reachable() is not None, reason="no Docker engine running on this machine")
def test_live_docker_engine_runs_a_job(tmp_path: Path) -> None:
    client = docker.from_env()
    image = client.images.pull("busybox:1.36")
    digest = image.attrs["RepoDigests"][0]
    spec = make_spec(
        tmp_path, image=digest, datasets=[], command=["sh", "-c", "echo hi; echo 42 > /output/r"]
    )
    r = DockerExecutor(client).run(spec, RunControl())
    assert r.state == "succeeded" and (spec.output_dir / "r").read_text() == "42\n"


# --- what the image's own config asks for --------------------------------------------------


def test_image_volumes_are_masked_read_only_and_its_healthcheck_is_off(tmp_path: Path) -> None:
    """Docker would give each declared volume a writable anonymous volume on the host disk
    (outside the read-only root and the output quota, kept after the container)."""
    opts = container_options(
        make_spec(tmp_path), uid=1, gid=1, image_volumes=["/var/lib/data", "/output", "/tmp", "/data"]
    )
    assert opts["tmpfs"] == {
        "/tmp": "rw,noexec,nosuid,nodev,size=256m,nr_inodes=32768",
        "/var/lib/data": "ro,noexec,nosuid,nodev,size=4k,nr_inodes=16",
        "/sys": "ro,noexec,nosuid,nodev,size=4k,nr_inodes=16",
    }
    assert opts["healthcheck"] == {"test": ["NONE"]}
    for bad in ("relative", "/a/../etc", "/"):
        with pytest.raises(ExecutorError, match="volume"):
            container_options(make_spec(tmp_path), uid=1, gid=1, image_volumes=[bad])


def test_a_run_masks_the_engines_image_volumes_and_removes_anonymous_ones(
    tmp_path: Path, engine_client: Any
) -> None:
    engine = Engine(volumes={"/scratch": {}})
    result = DockerExecutor(engine_client(engine)).run(make_spec(tmp_path), RunControl())
    assert result.state == "succeeded"
    create = next(b for m, p, b in engine.calls if p == "containers/create")
    assert create["HostConfig"]["Tmpfs"]["/scratch"].startswith("ro,")
    assert create["Healthcheck"]["Test"] == ["NONE"]
    delete = next(q for m, p, q in engine.calls if m == "DELETE" and p == "containers/c0ffee")
    assert "v=True" in delete or "v=1" in delete


def test_an_image_missing_from_the_engine_is_pulled_only_from_the_tres_registry(
    tmp_path: Path, engine_client: Any
) -> None:
    """A reference naming any other registry (the internet) is refused, not pulled."""
    foreign = make_spec(tmp_path, image="docker.io/evil/miner@sha256:" + "ef" * 32)
    engine = Engine(has_image=False)
    executor = DockerExecutor(engine_client(engine), pull_registry="registry.example.org")
    with pytest.raises(ExecutorError, match="pulls only from the TRE's own registry"):
        executor.run(foreign, RunControl())
    assert not [p for m, p, b in engine.calls if p in ("images/create", "containers/create")]
    # Without a registry configured, nothing is pulled at all.
    with pytest.raises(ExecutorError, match="pulls only"):
        DockerExecutor(engine_client(Engine(has_image=False))).run(make_spec(tmp_path), RunControl())
    # The TRE's own registry is pulled from.
    result = executor.run(make_spec(tmp_path), RunControl())
    assert result.state == "succeeded"
    assert [p for m, p, b in engine.calls if p == "images/create"] == ["images/create"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A real 1 MiB tmpfs (as root) holding the job's folder: the platform's disk."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    small = tmp_path / "small"
    small.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield small
    subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_full_disk_under_the_job_log_is_said_in_fixed_words(small_disk: Path, engine_client: Any) -> None:
    """Before: the log thread died with a traceback and the job "succeeded" with its log cut."""
    from tre.executors import reasons

    engine = Engine(exit_code=0, runs_for=0.2, logs=b"y" * (3 << 20))
    result = DockerExecutor(engine_client(engine)).run(make_spec(small_disk), RunControl())
    assert result.state == "failed" and result.reason.startswith(reasons.STORAGE_FULL), result
    assert "/" not in result.reason.replace("(ref: ", "") and engine.removed


def test_a_full_disk_under_the_outputs_is_said_in_fixed_words(small_disk: Path, engine_client: Any) -> None:
    """The job's write to /output (a bind of its folder) failed: it exited 1, which said
    nothing of why. The disk the folder is on is full: the API's fixed sentence."""
    from tre.executors import reasons

    spec = make_spec(small_disk)
    spec.output_dir.mkdir()
    with pytest.raises(OSError, match="No space left"):  # what the job met
        (spec.output_dir / "big.bin").write_bytes(b"\1" * (2 << 20))
    result = DockerExecutor(engine_client(Engine(exit_code=1))).run(spec, RunControl())
    assert result.state == "failed" and result.reason.startswith(reasons.STORAGE_FULL), result


def _as_owner(folder: Path, code: str) -> int:
    """Run ``code`` in ``folder`` as its owner (the container's uid), as the job would."""
    st = folder.stat()
    run = subprocess.run(
        [
            "setpriv",
            f"--reuid={st.st_uid}",
            f"--regid={st.st_gid}",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            code,
        ],
        cwd=folder,
        capture_output=True,
        check=False,
    )
    return run.returncode


def _figures(path: Path) -> list[int]:
    s = os.statvfs(path)
    return [s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the job's file system needs root")
def test_the_containers_output_is_a_file_system_of_the_quota(tmp_path: Path, engine_client: Any) -> None:
    """Redteam round 13: /output was a bind of a folder on the host's disk, so the job's
    ``statvfs("/output")`` read that disk's free blocks and inodes, live, as other jobs'
    logs and outputs filled it, and the quota was checked only after the job. Now the folder
    the container binds is a file system of exactly the quota: its figures are its own and
    do not move when the host writes, a write past the quota fails with ENOSPC, and the files
    are plain files in the output folder afterwards."""
    from tre.executors import outputfs

    spec = make_spec(tmp_path, output_limit_mb=8)
    seen: dict[str, Any] = {}

    def during() -> None:  # what the container sees and does while it runs
        out = spec.output_dir
        if "first" in seen or not outputfs.is_mount_point(out):
            return
        seen["first"] = _figures(out)
        # As the container's user (root could use the blocks reserved past the quota).
        assert _as_owner(out, "open('result.csv', 'w').write('a,b\\n1,2\\n')") == 0
        seen["fill"] = _as_owner(out, "open('fill.bin', 'wb').write(b'1' * (9 << 20))")
        (out / "fill.bin").unlink()
        seen["after_own"] = _figures(out)
        with open(tmp_path / "host-noise", "wb") as fh:  # another job's log, on the host's disk
            fh.write(os.urandom(16 * 1024 * 1024))
            os.fsync(fh.fileno())
        seen["after_host"] = _figures(out)
        seen["host"] = _figures(tmp_path)

    engine = Engine(exit_code=0, runs_for=1.0)
    result = DockerExecutor(engine_client(engine)).run(spec, RunControl(heartbeat=during))
    assert result.state == "succeeded", result
    _blocks, _free, avail, files, _ffree = seen["first"]
    # What an unprivileged writer may use: the quota, less the file system's own overhead.
    assert 4 * 1024 * 1024 < avail * 4096 <= 8 * 1024 * 1024 + 64 * 1024, seen["first"]
    assert seen["first"] != seen["host"] and files < seen["host"][3]
    assert seen["fill"] != 0  # ENOSPC at the quota
    assert seen["after_host"] == seen["after_own"]  # the host's writes do not show
    assert not outputfs.is_mount_point(spec.output_dir)
    assert (spec.output_dir / "result.csv").read_text() == "a,b\n1,2\n"
    assert not (spec.output_dir / "fill.bin").exists()
    assert not list(tmp_path.glob("*/.docker-output-*")) and engine.removed


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the job's file system needs root")
def test_a_job_that_filled_its_output_is_told_its_quota(tmp_path: Path, engine_client: Any) -> None:
    """The full file system is the job's own quota, not the platform's disk."""
    spec = make_spec(tmp_path, output_limit_mb=4)

    def fill() -> None:
        if spec.output_dir.stat().st_uid != 0:
            _as_owner(spec.output_dir, "open('big.bin', 'ab').write(b'1' * (5 << 20))")

    result = DockerExecutor(engine_client(Engine(exit_code=1, runs_for=0.5))).run(
        spec, RunControl(heartbeat=fill)
    )
    assert result.state == "failed" and result.reason == "outputs exceed the limit of 4 MiB", result


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the job's file system needs root")
def test_reattach_collects_the_output_file_system_a_dead_worker_mounted(
    tmp_path: Path, engine_client: Any
) -> None:
    from tre.executors import outputfs

    spec = make_spec(tmp_path)
    spec.output_dir.mkdir(parents=True)
    first = DockerExecutor(engine_client(Engine()))
    assert first._mount_output(spec, 10001) is not None  # what the dead worker left
    (spec.output_dir / "model.json").write_text("{}")
    engine = Engine(exit_code=0, runs_for=0.3)
    engine.started_at = time.monotonic()
    result = DockerExecutor(engine_client(engine)).reattach(spec, "c0ffee", RunControl())
    assert result.state == "succeeded", result
    assert not outputfs.is_mount_point(spec.output_dir)
    assert (spec.output_dir / "model.json").read_text() == "{}"
    assert not list(spec.output_dir.parent.glob(".docker-output-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the overlays needs root")
def test_the_containers_read_only_folders_do_not_show_the_hosts_free_space(
    tmp_path: Path, engine_client: Any
) -> None:
    """Redteam round 14: /data, /code and /inputs/<id> were read-only binds of host folders,
    so the job's ``statvfs`` of them read the host disk's free blocks and inodes, live, as
    other jobs' logs and outputs filled it (a covert channel between concurrent jobs and an
    activity monitor). Now each is bound through a read-only overlay whose topmost layer is
    an empty folder of a sealed tmpfs: the figures are that tmpfs's and do not move when the
    host writes; the files, the folder's mode and listing are the source's; nothing is left
    mounted after the job."""
    a = "a" * 32
    code, data, inp = tmp_path / "code", tmp_path / "ds1", tmp_path / "jobs" / a / "output"
    for folder, name in ((code, "main.py"), (data, "scan.dcm"), (inp, "result.csv")):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"x" * 100)
    data.chmod(0o750)
    spec = make_spec(tmp_path, code_dir=code, inputs=[InputMount(a, inp, f"/inputs/{a}")])
    engine = Engine(exit_code=0, runs_for=1.0)
    seen: dict[str, Any] = {}

    def during() -> None:  # what the container would see while it runs
        create = next((b for m, p, b in engine.calls if p == "containers/create"), None)
        if create is None or "first" in seen:
            return
        binds = {b.split(":")[1]: Path(b.split(":")[0]) for b in create["HostConfig"]["Binds"]}
        sources = {m: binds[m] for m in ("/data", "/code", f"/inputs/{a}")}
        seen["first"] = {m: _figures(p) for m, p in sources.items()}
        seen["host_first"] = _figures(tmp_path)
        with open(tmp_path / "host-noise", "wb") as fh:  # another job's log, on the host's disk
            fh.write(os.urandom(16 * 1024 * 1024))
            os.fsync(fh.fileno())
        for i in range(200):  # and its many small files
            (tmp_path / f"noise-{i}").touch()
        seen["after"] = {m: _figures(p) for m, p in sources.items()}
        seen["host_after"] = _figures(tmp_path)
        seen["listing"] = {m: sorted(os.listdir(p)) for m, p in sources.items()}
        seen["data_mode"] = sources["/data"].stat().st_mode & 0o7777
        try:
            (sources["/data"] / "new").write_text("x")
            seen["writable"] = True
        except OSError:
            seen["writable"] = False

    result = DockerExecutor(engine_client(engine)).run(spec, RunControl(heartbeat=during))
    assert result.state == "succeeded", result
    assert seen["host_first"] != seen["host_after"]  # the host's disk did move
    assert seen["after"] == seen["first"], seen  # ... and no read-only folder showed it
    assert seen["listing"] == {"/data": ["scan.dcm"], "/code": ["main.py"], f"/inputs/{a}": ["result.csv"]}
    assert seen["data_mode"] == 0o750 and seen["writable"] is False
    assert not list(tmp_path.glob(".docker-cover-*"))
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the overlays needs root")
def test_a_read_only_folder_whose_name_the_mount_options_would_split_is_covered_too(tmp_path: Path) -> None:
    """A comma or colon in a dataset's host path would cut overlayfs's ``lowerdir`` list:
    such a folder is seen through a bind with a plain name; everything goes after."""
    from tre.executors import rocover

    odd = tmp_path / "scans, 2024: a=b"
    odd.mkdir()
    (odd / "x.dcm").write_bytes(b"1")
    scratch, covers = rocover.mount_covers([odd], tmp_path)
    try:
        assert os.listdir(covers[str(odd)]) == ["x.dcm"]
        assert _figures(covers[str(odd)]) != _figures(odd)
    finally:
        rocover.unmount_all(scratch)
    assert not scratch.exists() and str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


# A worker that dies mid-job (os._exit: nothing unmounted), having mounted the job's covers
# and output file system as `DockerExecutor.run` does before creating the container.
_DYING_WORKER = """
import os, sys
from pathlib import Path
from tre.executors.base import DatasetMount, JobSpec
from tre.executors.docker import DockerExecutor

jobs, data, job_id = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
spec = JobSpec(job_id=job_id, project_id="p1", image=sys.argv[4], command=["x"],
               datasets=[DatasetMount("d", host_path=data, mount_path="/data")],
               output_dir=jobs / job_id / "output", log_path=jobs / job_id / "job.log")
spec.output_dir.mkdir(parents=True)
executor = DockerExecutor(client=object(), output_fs=True)
executor._cover_read_only(spec)
executor._mount_output(spec, 10001)
(spec.output_dir / "result.csv").write_text("a,b")
os._exit(0)
"""


def _left_by_a_dead_worker(jobs: Path, data: Path, job_id: str) -> Path:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _DYING_WORKER, str(jobs), str(data), job_id, IMAGE],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return jobs / job_id


def _mounted_under(folder: Path) -> list[str]:
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(str(folder) + "/")
    ]


def _unmount_everything_under(folder: Path) -> None:
    for point in sorted(_mounted_under(folder), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the covers and output file systems needs root")
def test_a_dead_workers_mounts_are_swept_when_a_worker_starts(tmp_path: Path, engine_client: Any) -> None:
    """Redteam round 15: the covers (``.docker-cover-*``) and output file system
    (``.docker-output-*``) a Docker worker mounts beside a job's output folder were unmounted
    only by a worker that reattached to the container; a worker that never came back, or
    whose container was gone, left overlays, a tmpfs and a loop device mounted for good and
    the job's outputs inside an image. A starting worker now sweeps them, as the local
    sandbox does its own: a dead worker's whose container is gone are unmounted (the outputs
    copied out as plain files); a dead worker's whose container the engine still has (a
    worker will reattach) and a live worker's are left alone."""
    jobs, data = tmp_path / "jobs", tmp_path / "data"
    data.mkdir()
    (data / "scan.dcm").write_bytes(b"x")
    gone, kept, live = "a" * 32, "b" * 32, "c" * 32
    try:
        gone_dir = _left_by_a_dead_worker(jobs, data, gone)
        kept_dir = _left_by_a_dead_worker(jobs, data, kept)
        ours = make_spec(
            tmp_path,
            job_id=live,
            datasets=[DatasetMount("d", host_path=data, mount_path="/data")],
            output_dir=jobs / live / "output",
        )
        ours.output_dir.mkdir(parents=True)
        mine = DockerExecutor(engine_client(Engine()), output_fs=True)
        mine._cover_read_only(ours)
        mine._mount_output(ours, 10001)
        assert _mounted_under(gone_dir) and _mounted_under(kept_dir) and _mounted_under(jobs / live)
        engine = Engine()
        engine.kept_jobs = {kept}
        DockerExecutor(engine_client(engine), jobs_dir=jobs)  # a worker starts
        assert _mounted_under(gone_dir) == []
        assert sorted(p.name for p in gone_dir.iterdir()) == ["output"]
        assert (gone_dir / "output" / "result.csv").read_text() == "a,b"
        assert len(_mounted_under(kept_dir)) >= 3  # the cover tmpfs, an overlay, the output
        assert len(_mounted_under(jobs / live)) >= 3
    finally:
        _unmount_everything_under(jobs)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the covers and output file systems needs root")
def test_a_reattaching_worker_takes_over_what_the_dead_one_left(tmp_path: Path, engine_client: Any) -> None:
    """A worker that reattaches renames the dead worker's folders to its own name before it
    follows the container, so a third worker sweeping while the container ends (and is
    removed) leaves them to it; it then copies the outputs out and unmounts everything."""
    jobs, data = tmp_path / "jobs", tmp_path / "data"
    data.mkdir()
    job_id = "d" * 32
    try:
        job_dir = _left_by_a_dead_worker(jobs, data, job_id)
        spec = make_spec(
            tmp_path,
            job_id=job_id,
            datasets=[DatasetMount("d", host_path=data, mount_path="/data")],
            output_dir=job_dir / "output",
        )
        engine = Engine(exit_code=0, runs_for=0.5)
        engine.started_at = time.monotonic()
        elsewhere = Engine()  # what another worker's engine client says
        elsewhere.kept_jobs = {job_id}
        sweeper = DockerExecutor(engine_client(elsewhere), jobs_dir=jobs)
        assert _mounted_under(job_dir)  # the container existed: nothing swept at its start
        elsewhere.kept_jobs = set()  # from now on it says the container is gone
        swept: list[int] = []
        result = DockerExecutor(engine_client(engine)).reattach(
            spec, "c0ffee", RunControl(heartbeat=lambda: swept.append(sweeper.clean_leftovers()))
        )
        assert result.state == "succeeded", result
        assert swept and not any(swept)
        assert (job_dir / "output" / "result.csv").read_text() == "a,b"
        assert _mounted_under(job_dir) == [] and sorted(p.name for p in job_dir.iterdir()) == ["output"]
    finally:
        _unmount_everything_under(jobs)
