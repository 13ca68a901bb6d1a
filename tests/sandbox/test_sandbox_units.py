"""Pure helpers of the local sandbox: image-ref sanitising, dataset mount rules, cgroup
path discovery from /proc files, and the seccomp program's shape."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tre.executors import cgroups, outputfs, seccomp
from tre.executors.base import DatasetMount, ExecutorError, ImageConfig, InputMount, JobSpec
from tre.executors.bwrap import (
    SandboxLayout,
    build_args,
    dataset_mounts,
    image_argv,
    image_identity,
    image_rootfs,
    image_workdir,
    input_mounts,
    nvidia_devices,
    sandbox_env,
    sanitise_image_ref,
)
from tre.executors.stage import Stage, scratch_inodes


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("tre/python:3.11", "tre_python_3.11"),
        ("ghcr.io/org/img@sha256:abc", "ghcr.io_org_img_sha256_abc"),
        ("..", "_."),
        ("../../etc", "_._.._etc"),
        (".hidden", "_hidden"),
    ],
)
def test_sanitise_image_ref_never_escapes_the_images_dir(ref: str, expected: str) -> None:
    name = sanitise_image_ref(ref)
    assert name == expected
    assert "/" not in name and name not in (".", "..")


def test_image_rootfs_only_for_real_directories(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "tre_python_3.11").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (images / "linked").symlink_to(tmp_path / "elsewhere")
    assert image_rootfs(images, "tre/python:3.11") == images / "tre_python_3.11"
    assert image_rootfs(images, "linked") is None
    assert image_rootfs(images, "absent:1") is None
    assert image_rootfs(None, "tre/python:3.11") is None


def _spec(tmp_path: Path, *mounts: DatasetMount) -> JobSpec:
    return JobSpec("j", "p", "img", ["true"], list(mounts), tmp_path / "out", tmp_path / "log")


def test_input_jobs_are_bound_read_only_at_their_own_path_only(tmp_path: Path) -> None:
    a_id, b_id = "a" * 32, "b" * 32
    for job_id in (a_id, b_id):
        (tmp_path / job_id).mkdir()
    good = [InputMount(j, tmp_path / j, f"/inputs/{j}") for j in (a_id, b_id)]
    spec = JobSpec("j", "p", "img", ["true"], [], tmp_path / "out", tmp_path / "log", inputs=good)
    assert input_mounts(spec) == [(tmp_path / a_id, f"/inputs/{a_id}"), (tmp_path / b_id, f"/inputs/{b_id}")]
    args = build_args(spec, SandboxLayout(uid=1000, gid=1000, tmp_size_bytes=1 << 20))
    for j in (a_id, b_id):
        i = args.index(f"/inputs/{j}")
        assert args[i - 2 : i] == ["--ro-bind", str(tmp_path / j)]
    root_read_only = max(i for i, a in enumerate(args) if a == "--remount-ro" and args[i + 1] == "/")
    assert args.index(f"/inputs/{b_id}") < root_read_only
    bad = [
        InputMount(a_id, tmp_path / a_id, "/output"),  # anywhere but /inputs/<id>
        InputMount(a_id, tmp_path / a_id, f"/inputs/{a_id}/../../etc"),
        InputMount("../x", tmp_path / a_id, "/inputs/../x"),
        InputMount(a_id, tmp_path / "missing", f"/inputs/{a_id}"),
    ]
    for mount in bad:
        with pytest.raises(ExecutorError):
            input_mounts(
                JobSpec("j", "p", "img", ["true"], [], tmp_path / "o", tmp_path / "l", inputs=[mount])
            )


def test_dataset_mount_rules(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a, b = DatasetMount("a", tmp_path / "a"), DatasetMount("b", tmp_path / "b")
    assert dataset_mounts(_spec(tmp_path, a)) == [(tmp_path / "a", "/data")]
    assert dataset_mounts(_spec(tmp_path, a, b)) == [(tmp_path / "a", "/data/a"), (tmp_path / "b", "/data/b")]
    with pytest.raises(ExecutorError, match="must be /data"):
        dataset_mounts(_spec(tmp_path, DatasetMount("a", tmp_path / "a", mount_path="/output")))
    with pytest.raises(ExecutorError, match="must be /data"):
        dataset_mounts(_spec(tmp_path, DatasetMount("a", tmp_path / "a", mount_path="/data/../etc")))
    with pytest.raises(ExecutorError, match="two datasets"):
        dataset_mounts(
            _spec(
                tmp_path,
                DatasetMount("a", tmp_path / "a", mount_path="/data/x"),
                DatasetMount("b", tmp_path / "b", mount_path="/data/x"),
            )
        )
    with pytest.raises(ExecutorError, match="no host path"):
        dataset_mounts(_spec(tmp_path, DatasetMount("a", pvc_name="pvc")))


def test_cgroup_paths_from_proc_files(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        "41 31 0:38 /docker/abc /sys/fs/cgroup/uni\\040fied rw - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    own = tmp_path / "cgroup"
    own.write_text("8:pids:/\n4:memory:/svc/worker\n0::/docker/abc/worker\n")
    mounts = cgroups._mounts(mountinfo)
    assert [m.fstype for m in mounts] == ["cgroup", "cgroup", "cgroup2"]
    assert mounts[2].mountpoint == Path("/sys/fs/cgroup/uni fied")
    paths = cgroups._own_cgroups(own)
    assert paths == {"pids": "/", "memory": "/svc/worker", "": "/docker/abc/worker"}
    assert cgroups._host_dir(mounts[0], paths["memory"]) == Path("/sys/fs/cgroup/memory/svc/worker")
    assert cgroups._host_dir(mounts[1], paths["pids"]) == Path("/sys/fs/cgroup/pids")
    # A container's cgroup namespace root is stripped from the path.
    assert cgroups._host_dir(mounts[2], paths[""]) == Path("/sys/fs/cgroup/uni fied/worker")


def run_bpf(prog: bytes, arch_id: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """Evaluate a classic-BPF seccomp program on one ``struct seccomp_data`` (a tiny
    interpreter for the opcodes the filter uses: LD|W|ABS, JEQ|K, JGE|K, AND|K, RET|K)."""
    data = struct.pack("=iIQ6Q", nr, arch_id, 0, *(list(args) + [0] * (6 - len(args))))
    insns = [struct.unpack("=HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x54:
            acc &= k
        elif code in (0x15, 0x35):
            hit = acc == k if code == 0x15 else acc >= k
            pc += jt if hit else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1
EAFNOSUPPORT, ENOSYS, KILL = 0x00050000 | 97, 0x00050000 | 38, 0x80000000


@pytest.mark.parametrize("arch", sorted(seccomp.DENIED_SYSCALLS))
def test_seccomp_program_decisions(arch: str) -> None:
    prog = seccomp.build_filter(arch)
    native = seccomp.AUDIT_ARCH[arch]
    assert len(prog) % 8 == 0
    for nr in seccomp.DENIED_SYSCALLS[arch].values():
        assert run_bpf(prog, native, nr) == EPERM
    rules = seccomp.ARG_RULES[arch]
    socket_nr, socketpair_nr = rules["socket"][0], rules["socketpair"][0]
    for nr in (socket_nr, socketpair_nr):
        assert run_bpf(prog, native, nr, (1, 1, 0)) == ALLOW  # AF_UNIX
        for family in (2, 10, 16, 17, 40, 0, 0xFFFFFFFF):  # INET, INET6, NETLINK, PACKET, VSOCK
            assert run_bpf(prog, native, nr, (family, 1, 0)) == EAFNOSUPPORT
    for name, (nr, index, kind) in rules.items():
        if kind != "mode":
            continue
        args = [0, 0, 0, 0]
        args[index] = 0o755
        assert run_bpf(prog, native, nr, tuple(args)) == ALLOW, name
        for special in (0o4755, 0o2755, 0o6000):
            args[index] = special
            assert run_bpf(prog, native, nr, tuple(args)) == EPERM, name
    persona_nr = rules["personality"][0]
    for value in seccomp.PERSONALITY_ALLOWED:
        assert run_bpf(prog, native, persona_nr, (value,)) == ALLOW, hex(value)
    # ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ADDR_COMPAT_LAYOUT, and one combined with PER_LINUX32.
    for value in (0x0040000, 0x0400000, 0x0200000, 0x0040008, 1):
        assert run_bpf(prog, native, persona_nr, (value,)) == EPERM, hex(value)
    assert run_bpf(prog, native, seccomp.ENOSYS_SYSCALLS[arch]["openat2"]) == ENOSYS
    assert run_bpf(prog, native, 0) == ALLOW  # read (x86_64) / io_setup (aarch64)
    assert run_bpf(prog, 0x40000003, 1) == KILL  # a foreign ABI (i386) is killed outright
    if arch == "x86_64":
        assert run_bpf(prog, native, 0x40000000 | 2) == KILL  # x32
    with pytest.raises(ValueError, match="no seccomp syscall table"):
        seccomp.build_filter("sparc")


def test_nvidia_device_selection(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidia10", "nvidia2", "nvidiactl", "nvidia-uvm", "nvidia-caps"):
        (tmp_path / name).touch()
    assert nvidia_devices(0, tmp_path) == []
    names = ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"]
    assert nvidia_devices(2, tmp_path) == [str(tmp_path / n) for n in names]
    with pytest.raises(ExecutorError, match="asks for 5 GPU"):
        nvidia_devices(5, tmp_path)


def test_entrypoint_and_cmd_follow_docker() -> None:
    cfg = ImageConfig(entrypoint=["/entry", "-v"], cmd=["default", "arg"])
    assert image_argv(["python3", "x.py"], cfg) == ["/entry", "-v", "python3", "x.py"]
    assert image_argv([], cfg) == ["/entry", "-v", "default", "arg"]
    assert image_argv([], ImageConfig(cmd=["sh"])) == ["sh"]
    assert image_argv(["a"], None) == ["a"]
    for bad in ([], [""], ["a\0b"]):
        with pytest.raises(ExecutorError, match="non-empty list"):
            image_argv(bad, ImageConfig())


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (10001, 10002)),
        ("1234", (1234, 10002)),
        ("1234:5678", (1234, 5678)),
        ("1234:0", (1234, 10002)),
        ("0", (10001, 10002)),
        ("root", (10001, 10002)),
        ("alice:1234", (10001, 10002)),
        ("99999999999", (10001, 10002)),
    ],
)
def test_image_user_numeric_non_root_only(user: str, expected: tuple[int, int]) -> None:
    assert image_identity(ImageConfig(user=user), 10001, 10002) == expected


def test_workdir_rules(tmp_path: Path) -> None:
    (tmp_path / "srv" / "app").mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    assert image_workdir(ImageConfig(working_dir="/srv/app"), True, tmp_path) == "/code"
    assert image_workdir(ImageConfig(working_dir="/srv/app/"), False, tmp_path) == "/srv/app"
    assert image_workdir(ImageConfig(working_dir="/srv/missing"), False, tmp_path) == "/tmp"
    assert image_workdir(ImageConfig(working_dir="/proc"), False, tmp_path) == "/tmp"  # a sandbox mount
    assert image_workdir(ImageConfig(working_dir="relative"), False, tmp_path) == "/tmp"
    assert image_workdir(None, False, None) == "/tmp"


def test_env_layers_image_then_executor_then_job(tmp_path: Path) -> None:
    spec = JobSpec(
        "j", "p", "img", ["x"], [], tmp_path, tmp_path / "log", env={"TRE_JOB_ID": "j1", "HOME": "/x"}
    )
    env = sandbox_env(
        spec,
        "/usr/bin:/bin",
        {"LD_LIBRARY_PATH": "/tre-nvidia/lib", "PATH": "/tre-nvidia/bin"},
        {"PATH": "/opt/conda/bin", "LD_LIBRARY_PATH": "/opt/lib", "TRE_JOB_ID": "forged", "LANG": "de_DE"},
    )
    assert env["PATH"] == "/tre-nvidia/bin:/opt/conda/bin"
    assert env["LD_LIBRARY_PATH"] == "/tre-nvidia/lib:/opt/lib"
    assert env["TRE_JOB_ID"] == "j1"  # the job's own TRE_* variables win over the image's
    assert env["LANG"] == "de_DE" and env["HOME"] == "/x"
    with pytest.raises(ExecutorError, match="invalid environment variable"):
        sandbox_env(spec, "/bin", {}, {"BAD=NAME": "x"})


def test_stage_maps_private_sources_and_leaves_system_paths(tmp_path: Path) -> None:
    stage = Stage(Path("/run/tre-stage"))
    assert stage(Path("/usr"), False) == "/usr"
    assert stage(Path("/etc/ld.so.cache"), False) == "/etc/ld.so.cache"
    first = stage(tmp_path / "data", False)
    assert first == "/run/tre-stage/b0"
    assert stage(tmp_path / "data", False) == first  # one stage entry per source
    assert stage(tmp_path / "data", True) == "/run/tre-stage/b1"  # writable is another entry
    assert stage.output(tmp_path / "out") == "/run/tre-stage/output"
    assert stage.tmp(1024) == "/run/tre-stage/tmp"
    # /dev/shm is a tmpfs of the same size but its own entry, not the /tmp one again.
    assert stage.tmp(1024, "shm") == "/run/tre-stage/shm"
    assert stage.entries == [
        ("ro", str(tmp_path / "data"), "b0"),
        ("rw", str(tmp_path / "data"), "b1"),
        ("rw", str(tmp_path / "out"), "output"),
        ("tmpfs", "1024:4096", "tmp"),
        ("tmpfs", "1024:4096", "shm"),
    ]
    # Entries scale with the size (one per 8 KiB) above the floor.
    assert scratch_inodes(512 * 2**20) == 65536
    assert scratch_inodes(0) == 4096
    with pytest.raises(ExecutorError, match="newline"):
        stage(Path("/srv/a\nb"), False)


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="e2fsprogs not installed")
def test_output_image_templates_are_copied_sparsely(tmp_path: Path) -> None:
    templates = outputfs.ImageTemplates(tmp_path / "templates")
    made = tmp_path / "a.ext4"
    copied = tmp_path / "b.ext4"
    templates.make(made, 5 * 2**20, 4321, 4321)
    templates.make(copied, 5 * 2**20, 4321, 4321)
    assert len(list((tmp_path / "templates").iterdir())) == 1  # made once
    assert made.read_bytes() == copied.read_bytes()
    assert copied.stat().st_blocks * 512 < 4 * 2**20 < copied.stat().st_size  # holes stay holes
    header = subprocess.run(["dumpe2fs", "-h", str(copied)], capture_output=True, text=True).stdout
    free = int(re.search(r"Free blocks:\s+(\d+)", header).group(1))  # type: ignore[union-attr]
    reserved = int(re.search(r"Reserved block count:\s+(\d+)", header).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"Block count:\s+(\d+)", header).group(1))  # type: ignore[union-attr]
    assert (free - reserved - min(count // 50, 4096)) * 4096 == 5 * 2**20  # exactly the quota
    # A template folder someone else could write is never used.
    (tmp_path / "open").mkdir(mode=0o777)
    (tmp_path / "open").chmod(0o777)
    outputfs.ImageTemplates(tmp_path / "open").make(tmp_path / "c.ext4", 2**20, 4321, 4321)
    assert list((tmp_path / "open").iterdir()) == []
