"""Shared fixtures: settings in a temp home, a migrated database (SQLite, and a real
PostgreSQL where a test asks for `engine_any`), the API app with real tokens."""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.worlds import WorldFactory
from tre.config import Settings, reset_settings_cache
from tre.store.db import init_db, make_engine, session_factory, session_scope
from tre.store.models import User, UserRole

REPO = Path(__file__).resolve().parent.parent

# The test files that take longest on CI, longest first (each file's summed test times in a
# full run, TRE_TEST_CPU_LOG or --junitxml; December 2026). The suite runs a file at a time on
# each of several workers (scripts/test, which keeps this order with --no-loadscope-reorder),
# and a worker takes the next file when it is free: a long file started last would run on
# alone at the end. Files not named here keep their collection order after these.
# tests/test_readme.py builds the demo's job image when the host has none cached (minutes): first.
SLOWEST_FILES = (
    "tests/test_readme.py",
    "tests/audit/test_tamper_round13.py",
    "tests/kernels/test_sandbox_cohort.py",
    "tests/api/test_cli_scripts.py",
    "tests/core/test_service_signals.py",
    "tests/oidc/test_cli_device_flow.py",
    "tests/egress/test_checks_planted.py",
    "tests/security/test_schemathesis_roles.py",
    "tests/core/test_cli_sweep.py",
    "tests/egress/test_panel_day_browser.py",
    "tests/api/test_readme_walkthrough.py",
    "tests/federation/test_cli_and_client.py",
    "tests/core/test_preprocess_job.py",
    "tests/audit/test_tamper_round12.py",
    "tests/egress/test_panel_defects.py",
    "tests/test_cli_usage_mistakes.py",
    "tests/core/test_sandbox_settings_startup.py",
    "tests/egress/test_checks_round9.py",
    "tests/k8s/test_executor_fake_api.py",
    "tests/api/test_openapi_schemathesis.py",
    "tests/core/test_cli.py",
    "tests/egress/test_panel_bounds.py",
    "tests/federation/test_federation_e2e.py",
    "tests/kernels/test_cohort.py",
    "tests/security/test_log_residuals_round20.py",
    "tests/images/test_remove_crash.py",
    "tests/security/test_log_follower_lag.py",
    "tests/test_readme_admin.py",
    "tests/oidc/test_panel_sign_in.py",
    "tests/images/test_cli_api.py",
    "tests/api/test_load_concurrency.py",
    "tests/audit/test_tamper_round10.py",
    "tests/core/test_sqlite_long_writer.py",
    "tests/egress/test_committees.py",
    "tests/images/test_remove.py",
    "tests/federation/test_hub_api.py",
    "tests/api/test_cli_for_people.py",
    "tests/kernels/test_cuda.py",
    "tests/k8s/test_manifests.py",
    "tests/k8s/test_admission_policy.py",
    "tests/egress/test_airlock_seams.py",
    "tests/sandbox/test_sandbox_id_counters.py",
    "tests/sandbox/test_sandbox_proc_counters.py",
    "tests/test_deploy_postgres_walkthrough.py",
    "tests/federation/test_node_variants.py",
    "tests/security/test_route_sweep.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slowest files first (`SLOWEST_FILES`); a file's own tests keep their order."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}

    def file_rank(item: pytest.Item) -> int:
        return rank.get(item.path.relative_to(REPO).as_posix(), len(rank))

    items.sort(key=file_rank)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """With TRE_TEST_CPU_LOG set, each test's wall time and the CPU seconds it cost (this
    worker's own and its waited-for subprocesses': sandboxes, CLI runs, servers) are appended
    to that file. Why: CI runs three workers on two cores, so a test that waits costs the
    suite little and one that computes costs it much; wall times alone do not tell them apart."""
    log = os.environ.get("TRE_TEST_CPU_LOG")
    if not log:
        yield
        return
    start_wall, start_self, start_children = (
        time.monotonic(),
        _cpu(resource.RUSAGE_SELF),
        _cpu(resource.RUSAGE_CHILDREN),
    )
    yield
    wall = time.monotonic() - start_wall
    own = _cpu(resource.RUSAGE_SELF) - start_self
    children = _cpu(resource.RUSAGE_CHILDREN) - start_children
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"{item.nodeid}\t{wall:.2f}\t{own:.2f}\t{children:.2f}\n")


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    from tests.pg_server import PgServer, find_pg_bin

    if find_pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries missing in CI: scripts/install-system-deps must install them")
        pytest.skip("PostgreSQL server binaries not installed (run scripts/install-system-deps)")
    server = PgServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for one test's own state folder.

    The local sandbox's host-toolchain developer mode is enabled explicitly (also for CLI
    subprocesses, through the environment): these tests submit Python jobs without an image
    root file system. tests/sandbox/test_sandbox_image.py runs jobs in a real image."""
    home = tmp_path / "home"
    monkeypatch.setenv("TRE_HOME", str(home))
    monkeypatch.setenv("TRE_SANDBOX_HOST_TOOLCHAIN", "1")
    monkeypatch.delenv("TRE_DATABASE_URL", raising=False)
    reset_settings_cache()
    s = Settings(
        home=home,
        policies_dir=REPO / "policies",
        worker_poll_s=0.05,
        worker_heartbeat_s=0.5,
        worker_stale_after_s=3.0,
        sandbox_host_toolchain=True,
    )
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database brought to head by the real migrations, once per run.

    Each test's store starts as a copy of it (`seed_sqlite`): running every migration again
    for each of a thousand-odd tests cost 0.3-3 s of CPU apiece on CI's two shared cores.
    The migrations themselves still run from an empty database here and in the tests that
    make their own engines (tests/core, tests/catalogue); `engine` still calls `init_db`."""
    path = tmp_path_factory.mktemp("schema") / "tre.db"
    eng = make_engine(f"sqlite:///{path}")
    init_db(eng)
    eng.dispose()
    with closing(sqlite3.connect(path)) as conn:  # fold the WAL into the file copied
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "template left unmerged WAL pages"
    return path


def seed_sqlite(url: str, template: Path) -> None:
    """Start a test's SQLite store as a copy of the migrated template (nothing if the URL is
    not a SQLite file or the file already exists)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return
    target = Path(url[len(prefix) :])
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


@pytest.fixture
def engine(settings: Settings, migrated_sqlite: Path) -> Iterator[Engine]:
    seed_sqlite(settings.resolved_database_url, migrated_sqlite)
    eng = make_engine(settings.resolved_database_url)
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_any(request: pytest.FixtureRequest, settings: Settings, migrated_sqlite: Path) -> Iterator[Engine]:
    """The same test on the embedded SQLite store and on a real PostgreSQL server (each a
    copy of a database migrated once per run: `migrated_sqlite`, `PgServer.create_database`)."""
    server = None
    if request.param == "sqlite":
        url = settings.resolved_database_url
        seed_sqlite(url, migrated_sqlite)
    else:
        server = request.getfixturevalue("pg_server")
        url = server.create_database(migrated=True)
    eng = make_engine(url)
    init_db(eng)
    yield eng
    eng.dispose()
    if server is not None:
        server.drop_database(url)


@pytest.fixture
def db(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def make_user() -> Callable[..., User]:
    def _make(session: Session, user_id: str, *roles: str) -> User:
        user = User(id=user_id, display_name=user_id)
        user.roles = [UserRole(role=r) for r in roles]
        session.add(user)
        session.flush()
        return user

    return _make


@pytest.fixture
def token_for(settings: Settings) -> Callable[..., str]:
    from tre.auth.tokens import TokenIssuer

    issuer = TokenIssuer.from_settings(settings)

    def _token(user_id: str, *roles: str, ttl_s: int = 3600) -> str:
        return issuer.mint(user_id, list(roles), ttl_s=ttl_s)

    return _token


@pytest.fixture
def app(settings: Settings, engine: Engine):  # type: ignore[no-untyped-def]
    from tre.api.app import create_app

    return create_app(settings, engine)


@pytest.fixture
def app_client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


@pytest.fixture
def esettings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose policies folder holds the egress test policies (the repo's may change)."""
    from tests.egress.test_workflow_support import write_policy

    write_policy(tmp_path / "policies")
    write_policy(tmp_path / "policies", "strict3", version="1", reviews=3)
    write_policy(tmp_path / "policies", "lenient1", version="1", reviews=1)
    settings.policies_dir = tmp_path / "policies"
    return settings


@dataclass
class World:
    """The core tests' TRE: users of every role, projects p1 (alice) and p2 (bob), dataset ct1
    granted to p1, and a bearer header per user."""

    headers: dict[str, dict[str, str]]
    data_dir: Path
    grant_id: str


@pytest.fixture
def dicom_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dicom"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(get_testdata_file(name), folder / name)
    return folder


@pytest.fixture
def world(engine: Engine, token_for: Callable[..., str], dicom_dir: Path) -> World:
    users = {
        "root": ["admin"],
        "alice": ["researcher"],
        "bob": ["researcher"],
        "dana": ["dac"],
        "audrey": ["auditor"],
    }
    with session_scope(engine) as s:
        make = WorldFactory(s)
        make.users(users)
        make.project(
            "p1",
            "Project one",
            ["alice"],
            quota={"max_cpu": 2, "max_memory_mb": 2048, "max_concurrent_jobs": 3},
        )
        make.project("p2", "Project two", ["bob"])
        make.dataset("ct1", dicom_dir, "CT sample")
        grant_id = make.grant("p1", "ct1", days=1)
        make.approve_image("p1")
        make.approve_image("p2")
    headers = {u: {"Authorization": f"Bearer {token_for(u, *roles)}"} for u, roles in users.items()}
    return World(headers=headers, data_dir=dicom_dir, grant_id=grant_id)
