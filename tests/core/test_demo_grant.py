"""`tre demo` run again grants its project access anew when the old grant cannot serve: the
README's first command must work on a machine where it ran before (a grant lapses after 30
days; an admin may have revoked it; an upgrade once lost every grant)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tre.demo import DATASET, _has_live_grant


def _grant(days: float, revoked: bool = False, dataset: str = DATASET) -> dict[str, str]:
    expires = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    return {"dataset_id": dataset, "expires_at": expires, "revoked_at": expires if revoked else ""}


def test_a_grant_that_cannot_serve_the_demo_is_not_live() -> None:
    assert _has_live_grant([_grant(30)])
    assert not _has_live_grant([])
    assert not _has_live_grant([_grant(-1)])  # lapsed
    assert not _has_live_grant([_grant(0.5)])  # lapses before the demo is done with it
    assert not _has_live_grant([_grant(30, revoked=True)])
    assert not _has_live_grant([_grant(30, dataset="other")])
    assert _has_live_grant([_grant(30, revoked=True), _grant(-1), _grant(10)])
