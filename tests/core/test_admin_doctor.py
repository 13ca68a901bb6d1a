"""`tre admin doctor` names, on a real host, what an operator must act on: a database that
cannot be reached, a full disk (a real tmpfs filled up), key files others can read, what dead
workers' sandboxes left, and jobs still marked running whose worker is gone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from tests.ports import free_port
from tre.cli.app import app as cli
from tre.config import Settings, reset_settings_cache
from tre.doctor import FAIL, OK, WARN, Check, run_checks
from tre.executors import liveness
from tre.store.base import utcnow
from tre.store.db import make_engine, session_scope
from tre.store.models import Job


def _doctor(settings: Settings, *extra: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRE_HOME": str(settings.home)}
    if url is not None:
        env["TRE_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "admin", "doctor", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _initialised(settings: Settings, engine: Engine) -> None:
    """The key files `tre admin init` and the first start make."""
    from tre import audit
    from tre.auth.tokens import TokenIssuer

    TokenIssuer.from_settings(settings)
    audit.configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        audit.checkpoint(s, max_age_s=0)


def test_a_healthy_host_is_all_ok(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _initialised(settings, engine)
    proc = _doctor(settings, "--json")
    assert proc.returncode == 0, proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["database"]["status"] == OK and "schema current" in checks["database"]["detail"]
    assert checks["keys"]["status"] == OK
    assert checks["leftovers"]["status"] == OK and checks["jobs"]["status"] == OK
    assert all(c["status"] == OK for name, c in checks.items() if name.startswith("disk"))
    # As people read it: each detail starts in one column (newcomer round 21: "refusal
    # entries  none ..." ran past the 13 characters the names were given).
    monkeypatch.setenv("TRE_HOME", str(settings.home))
    reset_settings_cache()
    lines = CliRunner().invoke(cli, ["admin", "doctor"]).output.splitlines()  # in-process: no 2nd start
    names = [c["name"] for c in json.loads(proc.stdout)]
    assert len(lines) == len(names) and all(x[6:].startswith(n) for x, n in zip(lines, names, strict=True))
    starts = {len(x) - len(x[6 + len(n) :].lstrip(" ")) for x, n in zip(lines, names, strict=True)}
    assert len(starts) == 1, lines


def test_an_unreachable_database_fails_in_one_line(settings: Settings, engine: Engine) -> None:
    url = f"postgresql+psycopg://tre:secret-pw@127.0.0.1:{free_port()}/tre"
    proc = _doctor(settings, url=url)
    assert proc.returncode == 1
    line = next(x for x in proc.stdout.splitlines() if x.startswith("fail"))
    assert "database" in line and "unreachable" in line
    assert "secret-pw" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_key_file_others_can_read_fails(settings: Settings, engine: Engine) -> None:
    _initialised(settings, engine)
    key = next(p for p in settings.keys_dir.iterdir() if p.suffix == ".pem")
    key.chmod(0o644)
    proc = _doctor(settings)
    assert proc.returncode == 1
    assert any(x.startswith("fail") and key.name in x for x in proc.stdout.splitlines())


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tre-doctor", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_named_and_clears_when_room_returns(small_disk: Path) -> None:
    settings = Settings(home=small_disk / "home", policies_dir=Path(__file__).parents[2] / "policies")
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url)
    from tre.store.db import init_db

    init_db(engine)
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:  # fill it for real, to the last block
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
    disks = [c for c in run_checks(settings, engine) if c.name.startswith("disk")]
    assert disks and all(c.status == FAIL and ": full;" in c.detail for c in disks)
    filler.unlink()
    disks = [c for c in run_checks(settings, engine) if c.name.startswith("disk")]
    assert all(c.status in (OK, WARN) for c in disks)
    assert all(": full;" not in c.detail for c in disks)
    engine.dispose()


def test_leftovers_and_orphaned_jobs_are_named(settings: Settings, engine: Engine, app_client, world) -> None:  # type: ignore[no-untyped-def]
    from tests.worlds import job_body

    job_id = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    gone = subprocess.Popen(["true"])
    gone.wait()
    with session_scope(engine) as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state="running",
                worker_id=f"{socket.gethostname()}:{gone.pid}:deadbeef",
                heartbeat_at=utcnow(),
            )
        )
    scratch = (
        settings.jobs_dir
        / job_id
        / f".sandbox-{os.getpid()}.{liveness.process_start(os.getpid()) + 1}-0123abcd"
    )  # type: ignore[operator]
    scratch.mkdir(parents=True)
    live = settings.jobs_dir / "other" / f".sandbox-{liveness.owner_tag()}-0123abcd"
    live.mkdir(parents=True)

    checks = _by_name(run_checks(settings, engine))
    assert checks["leftovers"].status == WARN and "1 scratch folder" in checks["leftovers"].detail
    assert checks["jobs"].status == WARN and job_id in checks["jobs"].detail
    assert scratch.exists() and live.exists()  # the doctor only reports


def test_a_state_directory_on_a_read_only_file_system_is_named(small_disk: Path) -> None:
    """ops15: a state disk mounted read-only (by an admin, or by the kernel after a disk error:
    ext4's errors=remount-ro) was reported "15 MiB free" (ok or low) with the database's
    "unable to open database file": now the disk check fails saying it is read-only."""
    settings = Settings(home=small_disk / "home", policies_dir=Path(__file__).parents[2] / "policies")
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url)
    from tre.store.db import init_db

    init_db(engine)
    engine.dispose()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        proc = _doctor(settings, "--json")
        assert proc.returncode == 1, proc.stderr
        checks = {c["name"]: c for c in json.loads(proc.stdout)}
        assert checks["disk state"]["status"] == FAIL, checks
        assert "read-only file system" in checks["disk state"]["detail"]
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=False)
