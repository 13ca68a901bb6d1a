"""Moving the audit log's clock in tests (no tests here)."""

from __future__ import annotations

import time as real_time
from types import SimpleNamespace

import pytest


def checkpoints_seen_as_old(monkeypatch: pytest.MonkeyPatch, seconds: float = 600) -> None:
    """The audit log reads the wall clock ``seconds`` ahead: every checkpoint signed so far is
    that old. (Editing the rows' created_at no longer ages them: the log judges a checkpoint's
    age by its signed time since round 15, as an insider could move the column.)"""
    from tre.audit import log

    ahead = {name: getattr(real_time, name) for name in dir(real_time) if not name.startswith("_")}
    ahead["time"] = lambda: real_time.time() + seconds
    monkeypatch.setattr(log, "time", SimpleNamespace(**ahead))
