"""The local sandbox's settings stop `tre serve` and `tre worker` at start, with one line.

Before, a job user that does not exist was found only when the first job ran (the job
failed), and a cgroup parent that is not a usable cgroup v2 folder was never reported at all
(jobs fell back to other cgroups or to rlimits with a log warning). Real server processes,
started as an operator would.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port
from tre.config import Settings, SettingsError, load_settings
from tre.executors.sandbox_settings import (
    cgroup_parent_problem,
    check_local_sandbox_settings,
    uid_range_problem,
)

JOB_USER_EXISTS = "tre-job"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(TRE_HOME=str(tmp_path / "home"), HOME=str(tmp_path), **extra)
    return env


def _one_line_failure(args: list[str], env: dict[str, str], *words: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and lines[0].startswith("error: invalid setting ")
    for word in words:
        assert word in lines[0], lines[0]


def _plain_folder(tmp_path: Path) -> str:
    folder = tmp_path / "not-a-cgroup"
    folder.mkdir()
    return str(folder)


BAD = [
    ("TRE_SANDBOX_JOB_USER", lambda _p: "no-such-user-x", "does not exist"),
    ("TRE_SANDBOX_JOB_USER", lambda _p: "root", "neither root nor"),
    ("TRE_SANDBOX_CGROUP_PARENT", lambda _p: "/nonexistent/tre.slice", "no such folder"),
    ("TRE_SANDBOX_CGROUP_PARENT", _plain_folder, "not a cgroup v2 folder"),
    ("TRE_SANDBOX_CGROUP_PARENT", lambda _p: "tre.slice", "not an absolute path"),
    ("TRE_SANDBOX_UID", lambda _p: "0", "greater than or equal to 1"),
    ("TRE_SANDBOX_GID", lambda _p: "-5", "greater than or equal to 1"),
    ("TRE_SANDBOX_JOB_USER", lambda _p: "", "at least 1 character"),
]


@pytest.mark.parametrize(("variable", "value", "says"), BAD, ids=[f"{v}-{s}" for v, _f, s in BAD])
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]], ids=["serve", "worker"])
def test_a_bad_sandbox_setting_stops_the_process_at_start(
    tmp_path: Path, command: list[str], variable: str, value: object, says: str
) -> None:
    """The process ends at once (no API listening, no worker polling) naming the variable."""
    assert callable(value)
    given = value(tmp_path)
    args = [command[0], "--port", str(free_port())] if command[0] == "serve" else command
    _one_line_failure(args, _env(tmp_path, **{variable: given}), variable, says)


UID_RANGES = [
    # Past 2^31: before, accepted at start and refused when the first job ran.
    ({"TRE_SANDBOX_UID_BASE": "2147483000", "TRE_SANDBOX_UID_COUNT": "1024"}, "runs past 2^31"),
    ({"TRE_SANDBOX_UID_BASE": "2147483647", "TRE_SANDBOX_UID_COUNT": "2"}, "at most 2147483647"),
    # Overlaps with ids that are not the job's own: before, accepted (accounts skipped silently).
    ({"TRE_SANDBOX_UID_BASE": "65000", "TRE_SANDBOX_UID_COUNT": "1024"}, "holds 65534"),
    ({"TRE_SANDBOX_UID_BASE": "1000", "TRE_SANDBOX_UID_COUNT": "10"}, "holds 1000, the uid of the account"),
]


@pytest.mark.parametrize(("given", "says"), UID_RANGES, ids=[s for _g, s in UID_RANGES])
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_sandbox_uid_range_stops_the_process_at_start(
    tmp_path: Path, command: str, given: dict[str, str], says: str
) -> None:
    if "account" in says and not _has_account(1000):
        pytest.skip("no account with uid 1000 on this host")
    args = [command, "--port", str(free_port())] if command == "serve" else [command]
    _one_line_failure(args, _env(tmp_path, **given), "TRE_SANDBOX_UID_BASE", "TRE_SANDBOX_UID_COUNT", says)


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_the_uid_range_may_not_hold_the_job_user_or_subordinate_uids(tmp_path: Path) -> None:
    """What the start-up check reads of the host, on a range placed over each kind of id."""
    job_uid = pwd.getpwnam(JOB_USER_EXISTS).pw_uid
    none = (tmp_path / "no-subuid",)
    assert uid_range_problem(0x70000000, 1024, job_uid, none) is None
    assert uid_range_problem(job_uid, 0, job_uid, none) is None  # switched off: nothing to hold
    said = uid_range_problem(job_uid - 1, 4, job_uid, none)
    assert said is not None and f"holds {job_uid}, the job user's uid" in said
    subuid = tmp_path / "subuid"
    subuid.write_text("# rootless containers\nalice:100000:65536\nbroken line\n")
    said = uid_range_problem(165000, 1024, job_uid, (tmp_path / "subgid", subuid))
    assert said == (
        f"the range 165000..166023 overlaps 100000..165535, the subordinate ids of 'alice' in {subuid}"
    )
    assert uid_range_problem(165536, 1024, job_uid, (subuid,)) is None  # just after: disjoint
    assert uid_range_problem(99000, 1000, job_uid, (subuid,)) is None  # just before: disjoint
    assert uid_range_problem(99000, 1001, job_uid, (subuid,)) is not None
    with pytest.raises(
        SettingsError, match=r"TRE_SANDBOX_UID_BASE=65534 with TRE_SANDBOX_UID_COUNT=1: .*65534"
    ):
        check_local_sandbox_settings(
            Settings(
                home=tmp_path, sandbox_job_user=JOB_USER_EXISTS, sandbox_uid_base=65534, sandbox_uid_count=1
            )
        )


def test_the_range_end_is_checked_by_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arithmetic alone: also `tre serve --no-worker` and the client commands refuse it."""
    monkeypatch.setenv("TRE_HOME", str(tmp_path))
    monkeypatch.setenv("TRE_SANDBOX_UID_BASE", "2147483647")
    monkeypatch.setenv("TRE_SANDBOX_UID_COUNT", "2")
    with pytest.raises(SettingsError, match=r"the last uid \(2147483648\) must be at most 2147483647"):
        load_settings(Settings, "TRE_")
    monkeypatch.setenv("TRE_SANDBOX_UID_COUNT", "1")
    assert load_settings(Settings, "TRE_").sandbox_uid_base == 2147483647  # the very last uid
    monkeypatch.setenv("TRE_SANDBOX_UID_COUNT", "0")
    assert load_settings(Settings, "TRE_").sandbox_uid_count == 0  # switched off: no range


def test_the_api_alone_does_not_need_the_sandbox(tmp_path: Path) -> None:
    """`tre serve --no-worker` runs no jobs here (the Kubernetes deployment's API): the local
    sandbox's settings are not in use, so they do not stop it."""
    port = free_port()
    env = _env(tmp_path, TRE_SANDBOX_JOB_USER="no-such-user-x")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tre.cli.main", "serve", "--port", str(port), "--no-worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "tre serve --no-worker did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_worker_without_bubblewrap_stops_at_start(tmp_path: Path) -> None:
    """A PATH without bwrap (as on a host where scripts/install-system-deps did not run)."""
    env = _env(tmp_path)
    env["PATH"] = str(tmp_path / "empty-bin")
    _one_line_failure(["worker"], env, "TRE_EXECUTOR='local'", "bubblewrap (bwrap) is not installed")


def test_a_worker_not_run_by_root_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(The test interpreter lives under /root, so no other user can start it: the uid is
    faked for the check itself.)"""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(
        SettingsError, match=r"TRE_EXECUTOR='local': the local sandbox runs jobs only when tre runs as root"
    ):
        check_local_sandbox_settings(Settings(home=tmp_path, sandbox_job_user=JOB_USER_EXISTS))


def test_a_good_configuration_passes(tmp_path: Path) -> None:
    check_local_sandbox_settings(Settings(home=tmp_path, sandbox_job_user=JOB_USER_EXISTS))


def test_a_cgroup_v2_parent_must_offer_memory_and_pids(tmp_path: Path) -> None:
    """What the check reads of a cgroup v2 folder, on a copy (this CI host runs cgroup v1)."""
    fake = tmp_path / "tre.slice"
    fake.mkdir()
    (fake / "cgroup.controllers").write_text("cpu io\n")
    assert cgroup_parent_problem(fake) == "its cgroup.controllers lacks memory, pids"
    (fake / "cgroup.controllers").write_text("cpu io memory pids\n")
    assert cgroup_parent_problem(fake) is None
    with pytest.raises(SettingsError, match="TRE_SANDBOX_CGROUP_PARENT"):
        check_local_sandbox_settings(
            Settings(home=tmp_path, sandbox_job_user=JOB_USER_EXISTS, sandbox_cgroup_parent=tmp_path)
        )


def test_a_heartbeat_slower_than_the_staleness_limit_is_refused(tmp_path: Path) -> None:
    env = _env(tmp_path, TRE_WORKER_HEARTBEAT_S="20", TRE_WORKER_STALE_AFTER_S="15")
    says = "TRE_WORKER_HEARTBEAT_S (20) must be less than TRE_WORKER_STALE_AFTER_S (15)"
    _one_line_failure(["worker"], env, says)


@pytest.mark.parametrize(
    "value", ["https://registry.example.org", "registry.local/", "reg.local/Team", "a b"]
)
def test_a_registry_that_no_reference_could_name_is_refused(tmp_path: Path, value: str) -> None:
    """TRE_IMAGE_REGISTRY goes into every imported image's reference: checked at start, not
    at the first push."""
    _one_line_failure(
        ["worker"], _env(tmp_path, TRE_IMAGE_REGISTRY=value), "TRE_IMAGE_REGISTRY", "registry host"
    )


@pytest.mark.parametrize("value", ["registry.tre.local", "registry.example.org:5000/tre", "10.0.0.5:5000"])
def test_registries_as_references_name_them_pass(tmp_path: Path, value: str) -> None:
    assert Settings(home=tmp_path, image_registry=value).image_registry == value


def test_the_docker_executor_checks_the_uid_range_too(tmp_path: Path) -> None:
    """Its containers take their uids from the same range (since round 11)."""
    env = _env(tmp_path, TRE_EXECUTOR="docker", TRE_SANDBOX_UID_BASE="65000", TRE_SANDBOX_UID_COUNT="1024")
    _one_line_failure(["worker"], env, "TRE_SANDBOX_UID_BASE=65000", "holds 65534")
