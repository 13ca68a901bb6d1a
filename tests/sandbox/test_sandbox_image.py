"""Jobs in a real image root file system, as the job user: the image, not the host.

The rootfs is built here from Debian's ``busybox-static`` (one static binary plus its applet
links, a marker file): it has none of the sandbox's mount points (/proc, /dev, /tmp, /data,
/output, /code), and it is not writable. Nothing in it comes from the host's toolchain.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.sandbox.conftest import Run, Sandbox
from tre.executors.base import DatasetMount, ImageConfig, RunControl
from tre.executors.local import LocalExecutor

BUSYBOX = Path("/bin/busybox")
JOB_USER = "tre-job"

if not BUSYBOX.is_file() or subprocess.run([str(BUSYBOX), "--list"], capture_output=True).returncode:
    pytest.skip("busybox-static is not installed (scripts/install-system-deps)", allow_module_level=True)


def job_user_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(JOB_USER)
    return entry.pw_uid, entry.pw_gid


def make_busybox_rootfs(root: Path) -> Path:
    """A minimal image: /bin/busybox, a link per applet, /etc/tre-image-marker."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
    for name in applets.split():
        if name != "busybox" and "/" not in name:
            (root / "bin" / name).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "tre-image-marker").write_text("busybox image\n")
    (root / "srv" / "app").mkdir(parents=True)
    # What an image store hands out: root-owned, readable by everyone, writable by nobody else.
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if name == "busybox" else 0o644)
    return root


@pytest.fixture
def image_sandbox(tmp_path: Path) -> tuple[Sandbox, Path]:
    """A sandbox whose jobs run in a busybox image; the host-toolchain mode is off."""
    try:
        job_user_ids()
    except KeyError:
        pytest.skip("the job user tre-job does not exist (scripts/install-system-deps)")
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    return Sandbox(tmp_path, LocalExecutor(images_dir=tmp_path / "images")), rootfs


def run_sh(
    sandbox: Sandbox,
    rootfs: Path,
    script: str,
    config: ImageConfig | None = None,
    **kw: object,
) -> Run:
    cfg = config or ImageConfig(env={"PATH": "/bin", "IMAGE_VAR": "from-image"})
    return sandbox.run("", command=["sh", "-c", script], rootfs=rootfs, image_config=cfg, **kw)


def test_the_job_sees_the_image_not_the_host(image_sandbox: tuple[Sandbox, Path], tmp_path: Path) -> None:
    sandbox, rootfs = image_sandbox
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "slice001.dcm").write_bytes(b"DICM")
    code = tmp_path / "code"
    code.mkdir()
    (code / "analysis.sh").write_text("echo analysis-ran\n")
    script = textwrap.dedent(
        """
        echo "marker=$(cat /etc/tre-image-marker)"
        test -e /usr/bin/python3 && echo host-python-visible
        test -e /usr/lib/os-release && echo host-usr-visible
        echo "var=$IMAGE_VAR job=$TRE_JOB_ID path=$PATH"
        echo "pwd=$(pwd)"
        sh analysis.sh
        echo x > /code/new 2>/dev/null || echo code-read-only
        echo "data=$(cat /data/slice001.dcm)"
        echo x > /data/new 2>/dev/null || echo data-read-only
        echo x > /etc/tre-image-marker 2>/dev/null || echo rootfs-read-only
        echo x > /new-top 2>/dev/null || echo root-read-only
        echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,)"
        echo "id=$(id -u):$(id -g)"
        echo result > /output/result.txt
        """
    )
    run = run_sh(
        sandbox,
        rootfs,
        script,
        datasets=[DatasetMount("ct", host_path=dataset)],
        code_dir=code,
        env={"TRE_JOB_ID": "job-1", "IMAGE_VAR_UNUSED": "x"},
    )
    assert run.result.state == "succeeded", run.log
    for expected in (
        "marker=busybox image",
        "var=from-image job=job-1 path=/bin",
        "pwd=/code",
        "analysis-ran",
        "code-read-only",
        "data=DICM",
        "data-read-only",
        "rootfs-read-only",
        "root-read-only",
        "ifaces=lo,",
        "id=10001:10001",
    ):
        assert expected in run.log, expected
    assert "host-python-visible" not in run.log and "host-usr-visible" not in run.log
    result = run.spec.output_dir / "result.txt"
    assert result.read_text() == "result\n"
    # On the host the job's file belongs to the job user, never to root or the worker.
    uid, gid = job_user_ids()
    assert (result.stat().st_uid, result.stat().st_gid) == (uid, gid)
    assert stat.S_IMODE(run.spec.output_dir.stat().st_mode) == 0o700  # not left 0777
    assert (rootfs / "etc" / "tre-image-marker").read_text() == "busybox image\n"


def test_entrypoint_cmd_workdir_and_user_follow_the_image(image_sandbox: tuple[Sandbox, Path]) -> None:
    sandbox, rootfs = image_sandbox
    config = ImageConfig(
        env={"PATH": "/bin"},
        entrypoint=["sh", "-c", 'echo "argv=$0 $1 pwd=$(pwd) id=$(id -u):$(id -g)"'],
        cmd=["from-cmd", "x"],
        working_dir="/srv/app",
        user="1234:2345",
    )
    default = sandbox.run("", command=[], rootfs=rootfs, image_config=config)
    assert default.result.state == "succeeded", default.log
    assert "argv=from-cmd x pwd=/srv/app id=1234:2345" in default.log
    replaced = sandbox.run("", command=["from-job", "y"], rootfs=rootfs, image_config=config)
    assert "argv=from-job y pwd=/srv/app id=1234:2345" in replaced.log
    # A named or root user is never honoured: the job gets the sandbox uid.
    for user in ("root", "0", "0:0", "postgres"):
        named = sandbox.run(
            "",
            command=[],
            rootfs=rootfs,
            image_config=ImageConfig(env={"PATH": "/bin"}, entrypoint=config.entrypoint, user=user),
        )
        assert "id=10001:10001" in named.log, (user, named.log)
    # A WorkingDir missing from the image falls back to /tmp instead of failing the set-up.
    missing = sandbox.run(
        "",
        command=[],
        rootfs=rootfs,
        image_config=ImageConfig(env={"PATH": "/bin"}, entrypoint=config.entrypoint, working_dir="/nope"),
    )
    assert "pwd=/tmp" in missing.log


def test_no_rootfs_is_refused_without_the_developer_mode(image_sandbox: tuple[Sandbox, Path]) -> None:
    sandbox, _rootfs = image_sandbox
    from tre.executors.base import ExecutorError

    with pytest.raises(ExecutorError, match="host toolchain is a developer mode that is off"):
        sandbox.run("print(1)")


def watch_output_file(run_ref: list[str], name: str, seen: dict[str, object], stop: threading.Event) -> None:
    """Poll the job's /output on the host (through the launcher's mount namespace) while
    the job runs, recording the owner, mode and mount flags of ``name``."""
    while not stop.is_set():
        if run_ref:
            path = Path(f"/proc/{run_ref[0]}/root/run/tre-stage/output/{name}")
            try:
                st = path.lstat()
                flags = os.statvfs(path.parent).f_flag
            except OSError:
                time.sleep(0.02)
                continue
            seen.update(uid=st.st_uid, mode=st.st_mode, nosuid=bool(flags & os.ST_NOSUID))
            if stat.S_IMODE(st.st_mode) & 0o100:
                return
        time.sleep(0.02)


@pytest.mark.parametrize("use_seccomp", [True, False])
def test_setuid_copy_is_never_a_root_setuid_file_on_the_host(
    image_sandbox: tuple[Sandbox, Path], use_seccomp: bool
) -> None:
    """The attack of the review: copy a shell to /output, chmod 4755, use it from another
    account while the job sleeps. seccomp refuses the mode; without seccomp the file still
    belongs to the job's unprivileged host uid, on a nosuid mount: nothing to gain either way."""
    sandbox, rootfs = image_sandbox
    executor = LocalExecutor(use_seccomp=use_seccomp)
    refs: list[str] = []
    seen: dict[str, object] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_output_file, args=(refs, "sh", seen, stop), daemon=True)
    watcher.start()
    script = "cp /bin/busybox /output/sh && chmod 4755 /output/sh || echo chmod-refused; sleep 2; echo done"
    try:
        run = run_sh(sandbox, rootfs, script, control=RunControl(on_started=refs.append), executor=executor)
    finally:
        stop.set()
        watcher.join(5)
    assert run.result.state == "succeeded", run.log
    uid, _gid = job_user_ids()
    assert seen, "the watcher never saw the job's file"
    # While the job runs the file is its own host uid's (one of the unprivileged job uids,
    # tre.executors.jobuids); its copy afterwards is the job user's.
    job_uids = range(executor.uid_range.base, executor.uid_range.base + executor.uid_range.count)
    assert seen["uid"] in job_uids and seen["uid"] != 0
    assert seen["nosuid"] is True
    if use_seccomp:
        assert "chmod-refused" in run.log
        assert not int(seen["mode"]) & (stat.S_ISUID | stat.S_ISGID)  # type: ignore[call-overload]
    copied = run.spec.output_dir / "sh"
    assert copied.stat().st_uid == uid
    assert not copied.stat().st_mode & (stat.S_ISUID | stat.S_ISGID)


def test_unlinked_files_cannot_pass_the_output_quota(image_sandbox: tuple[Sandbox, Path]) -> None:
    """A file with no name still uses the job's own file system, so the kernel stops it at
    the quota; on the host, the job's /output never holds more than the quota."""
    sandbox, rootfs = image_sandbox
    refs: list[str] = []
    used: list[int] = []
    stop = threading.Event()

    def measure() -> None:
        while not stop.is_set():
            if refs:
                with contextlib.suppress(OSError):
                    out = f"/proc/{refs[0]}/root/run/tre-stage/output"
                    st = os.statvfs(out)
                    used.append((st.f_blocks - st.f_bfree) * st.f_frsize)
                    if len(used) == 1:
                        # The empty file system is measured: now the job may start writing
                        # (on a loaded machine it could otherwise fill it before we look).
                        Path(out, "go").touch()
            time.sleep(0.05)

    watcher = threading.Thread(target=measure, daemon=True)
    watcher.start()
    script = textwrap.dedent(
        """
        i=0
        while [ ! -e /output/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
        rm -f /output/go
        for fd in 3 4 5 6; do
            eval "exec $fd> /output/hidden$fd"
            rm /output/hidden$fd
            dd if=/dev/zero bs=65536 count=64 2>/dev/null >&$fd || echo enospc-$fd
        done
        echo "inside: $(stat -f -c '%b %f %S' /output)"
        sleep 2
        exit 3
        """
    )
    try:
        run = run_sh(sandbox, rootfs, script, output_limit_mb=5, control=RunControl(on_started=refs.append))
    finally:
        stop.set()
        watcher.join(5)
    assert run.result.state == "failed", run.log
    # The nameless files are gone with the job, so the end state is just its exit code.
    assert run.result.reason == "exited with code 3"
    assert "enospc-4" in run.log and "enospc-3" not in run.log  # 4 MiB fit, the next 4 did not
    assert used, f"nothing measured: {run.log}"
    # What the job holds never passes the quota, give or take ext4's own metadata for the
    # files (extent blocks, drawn from the driver's reserve): without the file system the
    # review reached 20x the quota.
    baseline = min(used)
    assert max(used) - baseline <= 5 * 2**20 + 512 * 1024
    assert max(used) - baseline >= 4 * 2**20, (used, run.log)  # it really got close
    assert list(run.spec.output_dir.iterdir()) == []


def test_filling_tmp_is_disk_full_not_out_of_memory(image_sandbox: tuple[Sandbox, Path]) -> None:
    sandbox, rootfs = image_sandbox
    run = run_sh(sandbox, rootfs, "dd if=/dev/zero of=/tmp/fill bs=65536 2>/dev/null; exit 1", memory_mb=64)
    assert run.result.state == "failed", run.log
    assert run.result.reason == "disk full in /tmp"


def test_reason_never_carries_job_output(
    image_sandbox: tuple[Sandbox, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Job output that imitates bubblewrap or the launcher is the job's: it is in the log
    (screened for researchers elsewhere), never in the reason, never an ERROR in the worker log."""
    sandbox, rootfs = image_sandbox
    secret = "PATIENT=DOE^JOHN ID=12345 PIX=0a0b0c"
    with caplog.at_level(logging.DEBUG):
        for prefix, code in (("bwrap: ", 1), ("tre-launch: ", 125), ("", 1)):
            run = run_sh(sandbox, rootfs, f"echo '{prefix}{secret}' >&2; exit {code}")
            assert run.result.state == "failed"
            assert run.result.reason == f"exited with code {code}", run.result.reason
            assert "PATIENT" not in run.result.reason
            assert secret in run.log
    assert "PATIENT" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
