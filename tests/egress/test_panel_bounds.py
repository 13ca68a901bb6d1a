"""The review panel's work per page view is bounded, checked by counting, never by timing
(on SQLite and on PostgreSQL):
SQL statements per page do not grow with the number of files or queued requests, the HTML
of a request does not grow with the width of its tables, and a second view of a request
renders no file card again (they come from the fragment cache)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from egress_review import workflow
from egress_review.panel.fragments import fragments
from egress_review.staging import staged_path
from tests.egress.test_workflow_support import seed_world, with_egress_routes
from tre.api.app import create_app
from tre.auth import user_cache
from tre.auth.principal import Principal
from tre.store.db import session_factory
from tre.store.models import AuditEntry

SMALL_COUNT = b"site,n\nA,45\nB,40\nC,3\n"  # n=3: blocked by the threshold rule
SAFE = b"site,n\nA,45\nB,40\n"


def wide_table(columns: int, rows: int = 60) -> bytes:
    """Same cell values whatever the width, so only the width differs between two tables."""
    header = ",".join(f"c{i:04d}" for i in range(columns))
    body = "\n".join(",".join(str(10 + (r + c) % 9) for c in range(columns)) for r in range(rows))
    return f"{header}\n{body}\n".encode()


OUTPUTS = {
    **{f"tables/ok_{i:02d}.csv": SAFE for i in range(44)},
    **{f"tables/small_{i}.csv": SMALL_COUNT for i in range(4)},
    "tables/wide_200.csv": wide_table(200),
    "tables/wide_2000.csv": wide_table(2000),
}


@pytest.fixture
def engine(engine_any: Engine) -> Engine:
    """Every test here on the embedded SQLite store and on a real PostgreSQL server."""
    return engine_any


@pytest.fixture
def db(engine: Engine):  # type: ignore[no-untyped-def]
    return session_factory(engine)


@pytest.fixture
def world(db, esettings):  # type: ignore[no-untyped-def]
    with db.begin() as s:
        return seed_world(s, esettings, OUTPUTS)


def make_request(db, esettings, world, paths: list[str]) -> str:  # type: ignore[no-untyped-def]
    researcher = Principal(user_id=world.researcher, roles=frozenset({"researcher"}))
    with db.begin() as s:
        req = workflow.create_request(
            s, esettings, researcher, job_id=world.job_id, paths=paths, justification="bounds"
        )
        return str(req.id)


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    user_cache.invalidate()  # the user lookup is counted every time, not only when its cache is cold
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def app(esettings, engine):  # type: ignore[no-untyped-def]
    return with_egress_routes(create_app(esettings, engine))


@pytest.fixture
def reviewer(app, token_for) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    fragments.clear()
    with TestClient(app) as client:
        client.cookies.set("tre_panel_token", token_for("dana", "dac"))
        yield client


def test_request_page_statements_do_not_grow_with_files(db, engine, esettings, world, reviewer) -> None:
    few = make_request(
        db, esettings, world, ["tables/small_0.csv", *[f"tables/ok_{i:02d}.csv" for i in range(4)]]
    )
    many = make_request(db, esettings, world, list(OUTPUTS))
    assert len(OUTPUTS) == 50
    per_view = {}
    for rid in (few, many):
        for view in ("cold", "warm"):
            with counted(engine) as statements:
                assert reviewer.get(f"/panel/requests/{rid}").status_code == 200
            per_view[(rid, view)] = len(statements)
    # The same statements for 5 files as for 50: no query per file, cold or warm.
    assert per_view[(few, "cold")] == per_view[(many, "cold")]
    assert per_view[(few, "warm")] == per_view[(many, "warm")]
    assert per_view[(many, "warm")] <= 30, per_view


def test_queue_statements_do_not_grow_with_requests(db, engine, esettings, world, reviewer) -> None:
    make_request(db, esettings, world, ["tables/ok_00.csv"])
    with counted(engine) as one:
        assert reviewer.get("/panel/?show=all").status_code == 200
    for i in range(1, 8):
        make_request(db, esettings, world, [f"tables/ok_{i:02d}.csv", "tables/small_0.csv"])
    with counted(engine) as eight:
        page = reviewer.get("/panel/?show=all")
    assert page.status_code == 200 and page.text.count('class="req-link"') == 8
    assert len(eight) == len(one), eight


def test_request_html_does_not_grow_with_table_width(db, esettings, world, reviewer) -> None:
    narrow = make_request(db, esettings, world, ["tables/wide_200.csv", "tables/small_0.csv"])
    wide = make_request(db, esettings, world, ["tables/wide_2000.csv", "tables/small_0.csv"])
    pages = {}
    for rid in (narrow, wide):
        page = reviewer.get(f"/panel/requests/{rid}")
        assert page.status_code == 200
        pages[rid] = page.text
    # 40 of 200 columns and 40 of 2,000 columns: the same preview but for a few digits ...
    previews = {
        rid: re.findall(r'<div class="preview">.*?</div>\s*</details>', text, re.S)
        for rid, text in pages.items()
    }
    sizes = {rid: sum(len(p) for p in found) for rid, found in previews.items()}
    assert all(len(found) == 2 for found in previews.values())
    assert abs(sizes[wide] - sizes[narrow]) < 256, sizes
    # ... and the whole page (check reasons and capped evidence included) stays small.
    assert len(pages[wide]) < 2 * len(pages[narrow]) and len(pages[wide]) < 64_000, len(pages[wide])
    assert "columns 1–40 of 2000" in pages[wide]


def test_fifty_file_request_page_is_bounded_and_cards_render_once(db, esettings, world, reviewer) -> None:
    rid = make_request(db, esettings, world, list(OUTPUTS))
    with db.begin() as s:
        files = workflow.load_request(s, rid).files
        outcomes = [f.outcome for f in files]
        small_id = next(f.id for f in files if f.path == "tables/small_0.csv")
    passed = outcomes.count("pass")
    assert 40 <= passed < 50
    first = reviewer.get(f"/panel/requests/{rid}")
    assert first.status_code == 200
    assert fragments.misses == 50 and fragments.hits == 0
    # Passed files are collapsed to a line: no check table, no preview, no evidence.
    assert first.text.count('class="card file pass deferred"') == passed
    assert first.text.count('<table class="grid checks">') == 50 - passed
    assert len(first.content) < 160_000, len(first.content)
    second = reviewer.get(f"/panel/requests/{rid}")
    assert fragments.misses == 50 and fragments.hits == 50  # nothing rendered again
    assert second.text.count("tables/ok_") == first.text.count("tables/ok_")
    # A table's next page is a new view of that one file: one card rendered, the rest cached.
    paged = reviewer.get(f"/panel/requests/{rid}?page{small_id}=1")
    assert paged.status_code == 200 and fragments.misses == 51


def test_new_request_cards_are_rendered_before_the_first_reviewer_looks(
    app, esettings, world, token_for, reviewer
) -> None:
    with TestClient(with_egress_routes(app)) as researcher:
        r = researcher.post(
            "/api/v1/egress/requests",
            headers={"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"},
            json={"job_id": world.job_id, "files": list(OUTPUTS)[:12], "justification": "warm"},
        )
    assert r.status_code == 201, r.text
    assert fragments.misses == 12  # rendered by the API once it had answered
    page = reviewer.get(f"/panel/requests/{r.json()['id']}")
    assert page.status_code == 200 and fragments.misses == 12 and fragments.hits == 12


def test_a_card_whose_staged_copy_fails_verification_is_never_cached(
    db, engine, esettings, world, reviewer
) -> None:
    rid = make_request(db, esettings, world, ["tables/small_0.csv", "tables/ok_00.csv"])
    with db.begin() as s:
        sha = next(f.sha256 for f in workflow.load_request(s, rid).files if f.path == "tables/small_0.csv")
    frozen = staged_path(esettings.staging_dir, sha)
    os.chmod(frozen, 0o644)
    frozen.write_bytes(b"site,n\nA,45\nB,40\nC,30\n")  # altered after the checks ran
    for _ in range(2):
        page = reviewer.get(f"/panel/requests/{rid}")
        assert page.status_code == 200 and "the staged copy was altered" in page.text
    with db.begin() as s:
        refused = s.scalars(select(AuditEntry).where(AuditEntry.action == "egress.preview_refused")).all()
    assert len(refused) == 2  # each view meets (and audits) the failure; nothing stale is served
    assert "C,30" not in page.text
