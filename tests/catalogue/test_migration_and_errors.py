"""Migration 0007_catalogue on a database that already has datasets, the dataset
registration's catalogue fields, and the errors a query meets (SQLite and PostgreSQL)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine

from tests.catalogue.support import lung_cohort, policy_folder
from tests.worlds import WorldFactory
from tre.catalogue.cache import CatalogueUnavailable
from tre.catalogue.counts import answer_count_query
from tre.catalogue.models import CountQuery
from tre.config import Settings
from tre.errors import TreError
from tre.registry import register_dataset
from tre.store.db import alembic_config, make_engine, session_scope
from tre.store.models import Dataset


@pytest.fixture
def bare_engine(request: pytest.FixtureRequest, settings: Settings) -> Any:
    """A database with no schema yet, on SQLite or PostgreSQL."""
    if getattr(request, "param", "sqlite") == "sqlite":
        url = settings.resolved_database_url
    else:
        url = request.getfixturevalue("pg_server").create_database()
    eng = make_engine(url)
    yield eng
    eng.dispose()


@pytest.mark.parametrize("bare_engine", ["sqlite", "postgresql"], indirect=True)
def test_migration_keeps_existing_datasets(bare_engine: Engine) -> None:
    cfg = alembic_config(bare_engine)
    command.upgrade(cfg, "0005_tes")
    with bare_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, name, path, description, policy, meta, created_at) "
                "VALUES ('old', 'Old', '/srv/old', '', 'default', '{}', CURRENT_TIMESTAMP)"
            )
        )
    command.upgrade(cfg, "0007_catalogue")
    with session_scope(bare_engine) as s:
        old = s.get(Dataset, "old")
        assert old is not None and old.conditions == [] and old.access_rights == "NON_PUBLIC"
    command.downgrade(cfg, "0005_tes")
    assert "dataset_catalogues" not in sa.inspect(bare_engine).get_table_names()
    command.upgrade(cfg, "head")


def test_registration_normalises_and_checks_conditions(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "data" / "lung"
    lung_cohort(folder, range(1, 3))
    with session_scope(engine) as s:
        WorldFactory(s).users({"root": ["admin"]})
        ds = register_dataset(
            s, "root", "lung", "Lung", folder, conditions=["ICD10:c34", "icd10:C34", "snomed:254637007"]
        )
        assert ds.conditions == ["icd10:C34", "snomed:254637007"]
    for bad in (["lung cancer"], ["icd10:lung"]):
        with pytest.raises(TreError, match="condition code"), session_scope(engine) as s:
            register_dataset(s, "root", "bad", "Bad", folder, conditions=bad)
    with pytest.raises(TreError, match="access rights"), session_scope(engine) as s:
        register_dataset(s, "root", "bad", "Bad", folder, access_rights="OPEN")


def test_dataset_api_takes_catalogue_fields(world: Any, app_client: Any, tmp_path: Path) -> None:
    folder = tmp_path / "data" / "lung"
    lung_cohort(folder, range(1, 3))
    body = {"id": "lung", "path": str(folder), "conditions": ["icd10:c34"], "access_rights": "RESTRICTED"}
    resp = app_client.post("/api/v1/datasets", json=body, headers=world.headers["root"])
    assert resp.status_code == 201, resp.text
    assert resp.json()["conditions"] == ["icd10:C34"] and resp.json()["access_rights"] == "RESTRICTED"
    bad = app_client.post(
        "/api/v1/datasets", json={**body, "id": "bad", "conditions": ["C34"]}, headers=world.headers["root"]
    )
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_a_dataset_that_went_away_answers_unavailable(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    settings.policies_dir = policy_folder(tmp_path / "policies")
    folder = tmp_path / "data" / "lung"
    lung_cohort(folder, range(1, 3))
    with session_scope(engine) as s:
        WorldFactory(s).users({"root": ["admin"]})
        register_dataset(s, "root", "lung", "Lung", folder, policy="exact")
    with session_scope(engine) as s:
        answer_count_query(s, settings, CountQuery())  # facts cached
    shutil.rmtree(folder)
    settings.catalogue_recheck_s = 0.0
    with pytest.raises(CatalogueUnavailable) as caught, session_scope(engine) as s:
        answer_count_query(s, settings, CountQuery())
    assert str(folder) not in caught.value.detail and caught.value.status == 503


@pytest.mark.parametrize("requester", ["", "alice smith", "a\nb", "x" * 129])
def test_requester_names_are_plain(engine: Engine, settings: Settings, requester: str) -> None:
    with pytest.raises(TreError, match="requester"), session_scope(engine) as s:
        answer_count_query(s, settings, CountQuery(), requester=requester)
