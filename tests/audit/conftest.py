"""Audit fixtures: a migrated engine (SQLite and PostgreSQL) bound to a fresh signing key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.core.conftest import dicom_dir, world  # noqa: F401  (the populated TRE, for API tests)
from tre.audit.service import iter_export, plan_export
from tre.audit.signing import AuditSigner, configure, get_signer
from tre.config import Settings
from tre.store.db import session_factory, session_scope


@pytest.fixture
def signer(settings: Settings) -> AuditSigner:
    return get_signer(settings.keys_dir)


@pytest.fixture
def log_engine(engine_any: Engine, settings: Settings) -> Iterator[Engine]:
    """The store under test, on both backends, signing with the test home's key."""
    configure(engine_any, settings.keys_dir)
    yield engine_any


def export_bytes(engine: Engine, signer: AuditSigner, **kw: object) -> bytes:
    with session_scope(engine) as s:
        plan = plan_export(s, signer, **kw)  # type: ignore[arg-type]
    return b"".join(iter_export(plan, session_factory(engine)))
