"""`Settings.sqlite_synchronous`: FULL unless the deployer chooses NORMAL (docs/api-load.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tre.api.app import create_app
from tre.config import Settings

_LEVELS = {1: "NORMAL", 2: "FULL"}  # what PRAGMA synchronous reports


@pytest.mark.parametrize("mode", ["FULL", "NORMAL"])
def test_the_apis_connections_use_the_chosen_mode(settings: Settings, mode: str) -> None:
    settings.sqlite_synchronous = mode  # type: ignore[assignment]
    app = create_app(settings)
    try:
        with app.state.engine.connect() as conn:
            assert _LEVELS[conn.execute(text("PRAGMA synchronous")).scalar_one()] == mode
    finally:
        app.state.engine.dispose()


def test_an_unknown_mode_is_refused() -> None:
    from tre.store.db import make_engine

    with pytest.raises(ValueError, match="sqlite_synchronous"):
        make_engine("sqlite://", sqlite_synchronous="OFF")
