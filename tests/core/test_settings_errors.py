"""A deployment's mistakes in its environment are one line naming the setting, at start-up.

An operator who writes ``TRE_API_WORKERS=two``, ``TRE_EXECUTOR=k8s`` or a MySQL URL learns
which variable is wrong and why before anything runs, instead of reading a pydantic or
SQLAlchemy traceback (or, for the Kubernetes settings, only when the first job reaches the
cluster). A database URL is never echoed (it may carry a password). Migrations on PostgreSQL
are serialised by an advisory lock, so API replicas and the worker may start together on a
fresh database (they failed with a duplicate ``alembic_version`` table before).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.ports import free_port
from tre.config import SettingsError, get_settings, reset_settings_cache
from tre.executors.kubernetes.config import load_kubernetes_settings
from tre.store.db import MIGRATION_LOCK_KEY, DatabaseUnreachable, init_db, make_engine


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("TRE_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("TRE_") and name != "TRE_HOME":
            monkeypatch.delenv(name)
    reset_settings_cache()
    yield
    reset_settings_cache()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TRE_API_WORKERS", "two", "TRE_API_WORKERS='two': input should be a valid integer"),
        ("TRE_API_WORKERS", "0", "TRE_API_WORKERS='0': input should be greater than or equal to 1"),
        ("TRE_EXECUTOR", "k8s", "TRE_EXECUTOR='k8s': input should be 'local', 'kubernetes' or 'docker'"),
        ("TRE_AUTH_MODE", "ldap", "TRE_AUTH_MODE='ldap': input should be 'embedded' or 'oidc'"),
        ("TRE_API_READ_CACHE", "perhaps", "TRE_API_READ_CACHE='perhaps': input should be a valid boolean"),
        (
            "TRE_DATABASE_URL",
            "mysql://u:hunter2@db/tre",
            "TRE_DATABASE_URL: database 'mysql' is not supported",
        ),
        ("TRE_DATABASE_URL", "db.example.org:5432/tre", "TRE_DATABASE_URL: not a SQLAlchemy URL"),
        (
            "TRE_POLICIES_DIR",
            "/nonexistent/policies",
            "TRE_POLICIES_DIR='/nonexistent/policies': '/nonexistent",
        ),
        ("TRE_OIDC_ISSUER", "id.example.org", "TRE_OIDC_ISSUER='id.example.org': not an http(s) URL"),
        # Newcomer round 23: before, accepted here; `tre serve` then said "unexpected TokenError".
        (
            "TRE_OIDC_ISSUER",
            "http://id.example.org",
            "TRE_OIDC_ISSUER='http://id.example.org': must be an https",
        ),
        ("TRE_AUTH_MODE", "oidc", "TRE_AUTH_MODE=oidc needs TRE_OIDC_ISSUER (or TRE_OIDC_JWKS_URL)"),
        ("TRE_CATALOGUE_BASE_IRI", "node a", "TRE_CATALOGUE_BASE_IRI='node a': not an IRI"),
        # Round 11: before, accepted here; `tre serve` then said "unexpected TokenError".
        ("TRE_OIDC_ALGORITHMS", '["none"]', "TRE_OIDC_ALGORITHMS: refused: none (no signature"),
        ("TRE_OIDC_ALGORITHMS", '["RS256", "HS256"]', "TRE_OIDC_ALGORITHMS: refused: HS256"),
        ("TRE_OIDC_ALGORITHMS", "[]", "TRE_OIDC_ALGORITHMS: at least one signature algorithm"),
        ("TRE_OIDC_ALGORITHMS", '["RSA256"]', "TRE_OIDC_ALGORITHMS: unknown algorithm RSA256"),
        # Before, accepted: an empty audience or issuer, a panel asking for no ID token.
        ("TRE_TOKEN_AUDIENCE", "", "TRE_TOKEN_AUDIENCE='': string should have at least 1 character"),
        ("TRE_TOKEN_ISSUER", "", "TRE_TOKEN_ISSUER='': string should have at least 1 character"),
        ("TRE_OIDC_ROLES_CLAIM", "", "TRE_OIDC_ROLES_CLAIM='': string should have at least 1"),
        ("TRE_OIDC_SCOPES", "profile tre", "TRE_OIDC_SCOPES='profile tre': must include openid"),
    ],
)
def test_a_bad_value_names_its_setting(
    fresh_settings: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        get_settings()
    message = str(caught.value)
    assert message.startswith("invalid setting ") and says in message
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        (
            "TRE_K8S_JOB_UID",
            "nobody",
            "invalid setting TRE_K8S_JOB_UID='nobody': input should be a valid integer",
        ),
        (
            "TRE_K8S_GPU_NODE_SELECTOR",
            "pool=gpu",
            "invalid setting TRE_K8S_GPU_NODE_SELECTOR: not valid JSON",
        ),
    ],
)
def test_the_kubernetes_settings_name_theirs(
    fresh_settings: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match="^" + re.escape(says)):
        load_kubernetes_settings()


def test_relative_folders_are_made_absolute_once(
    fresh_settings: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Before, ``TRE_HOME=state`` stayed relative: the state folder, and the protected paths
    datasets are checked against, followed each process's working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRE_HOME", "state")
    monkeypatch.setenv("TRE_DATA_DIR", "data")
    settings = get_settings()
    assert settings.home == tmp_path / "state" and settings.data_dir == tmp_path / "data"
    assert all(p.is_absolute() for p in settings.protected_paths)


def test_a_list_setting_that_is_not_json(fresh_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRE_OIDC_ALGORITHMS", "RS256")
    with pytest.raises(SettingsError, match=r"^invalid setting TRE_OIDC_ALGORITHMS: not valid JSON"):
        get_settings()


def test_good_values_still_load(fresh_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRE_API_WORKERS", "3")
    monkeypatch.setenv("TRE_DATABASE_URL", "postgresql+psycopg://tre:pw@127.0.0.1:5432/tre")
    monkeypatch.setenv("TRE_K8S_GPU_NODE_SELECTOR", '{"tre.io/pool": "gpu"}')
    monkeypatch.setenv("TRE_AUTH_MODE", "oidc")
    monkeypatch.setenv("TRE_OIDC_ISSUER", "https://id.example.org/realms/tre")
    monkeypatch.setenv("TRE_CATALOGUE_BASE_IRI", "https://node.example.org/tre")
    assert get_settings().api_workers == 3
    assert load_kubernetes_settings().gpu_node_selector == {"tre.io/pool": "gpu"}


def test_a_missing_driver_names_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"TRE_DATABASE_URL: its driver is not installed") as caught:
        make_engine("postgresql+psycopg2://tre:hunter2@127.0.0.1/tre")
    assert "hunter2" not in str(caught.value)


def test_an_unreachable_database_is_one_sentence_without_the_password() -> None:
    url = f"postgresql+psycopg://tre:hunter2@127.0.0.1:{free_port()}/tre"
    engine = make_engine(url)
    try:
        with pytest.raises(DatabaseUnreachable) as caught:
            init_db(engine)
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "hunter2" not in message and "tre:***@127.0.0.1" in message and "TRE_DATABASE_URL" in message
    assert "\n" not in message


def test_the_cli_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env |= {"TRE_HOME": str(tmp_path / "home"), "TRE_EXECUTOR": "k8s"}
    done = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "admin", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: invalid setting TRE_EXECUTOR='k8s': input should be 'local', 'kubernetes' or 'docker'"
    ]


def test_postgres_migrations_wait_for_each_other(pg_server: Any) -> None:
    """A second process's migration waits on the advisory lock the first holds, then finds
    the schema; checked by holding the lock here and seeing ``init_db`` wait for it."""
    url = pg_server.create_database()
    holder = create_engine(url)
    engine = make_engine(url)
    errors: list[BaseException] = []
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()

            def migrate() -> None:
                try:
                    init_db(engine)
                except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                    errors.append(exc)

            thread = threading.Thread(target=migrate)
            thread.start()
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            for _ in range(600):  # until the migration's connection queues behind our lock
                if conn.execute(text(waiting)).scalar_one() or not thread.is_alive():
                    break
                thread.join(0.05)
            assert conn.execute(text(waiting)).scalar_one() == 1
            assert "alembic_version" not in inspect(conn).get_table_names()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
            thread.join(60)
        assert not thread.is_alive() and not errors
        init_db(engine)  # a later start finds the schema at head and changes nothing
        with engine.connect() as check:
            assert "jobs" in inspect(check).get_table_names()
    finally:
        engine.dispose()
        holder.dispose()


def test_the_api_answers_503_when_the_database_goes_away(
    pg_server: Any, settings: Any, token_for: Any
) -> None:
    """A PostgreSQL server that stops answering is a problem document the client may retry,
    not an "internal error"; the driver's text (addresses) stays out of the answer."""
    from fastapi.testclient import TestClient

    from tre.api.app import create_app

    url = pg_server.create_database()
    engine = make_engine(url)
    init_db(engine)
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with TestClient(create_app(settings, engine)) as client:
            headers = {"Authorization": f"Bearer {token_for('admin', 'admin')}"}
            client.get("/api/v1/projects", headers=headers)  # a pooled connection exists
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{engine.url.database}" WITH (FORCE)'))
            answer = client.get("/api/v1/projects", headers=headers)
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.headers["retry-after"] == "5"
        body = answer.json()
        assert body["detail"] == "the database did not answer; try again shortly"
        assert "127.0.0.1" not in answer.text and "does not exist" not in answer.text
    finally:
        engine.dispose()
        admin.dispose()
