"""A route's transaction ends before its answer leaves, on every app.

FastAPI (0.118 and later) runs a yield dependency's exit after the response was sent unless
the dependency is declared ``scope="function"``. The request session's commit lives in that
exit, so a client could act on a 201 before the row existed: on a fresh install, ``tre demo``
registered its dataset and the very next listing lacked it ("unexpected StopIteration"). And
a commit that failed after a 201 had been sent lost the change while the client believed it.

A real uvicorn server (`tre.server.BackgroundServer`): FastAPI's test client waits for the
whole app call, so it never shows the race.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.conftest import World
from tre.api import deps
from tre.api.openapi import iter_api_routes
from tre.config import Settings
from tre.server import BackgroundServer
from tre.store.db import DatabaseBusy, session_scope
from tre.store.models import Project


def _session_dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        if sub.call is deps.get_session:
            yield sub
        yield from _session_dependants(sub)


def _apps(settings: Settings, engine: Engine) -> dict[str, FastAPI]:
    from tre.api.app import create_app
    from tre.federation.hub.app import create_hub_app

    return {"api": create_app(settings, engine), "hub": create_hub_app(settings, engine)}


def test_every_route_ends_its_session_before_answering(settings: Settings, engine: Engine) -> None:
    late = []
    seen = 0
    for name, app in _apps(settings, engine).items():
        for route in iter_api_routes(list(app.router.routes)):
            for sub in _session_dependants(route.dependant):
                seen += 1
                if sub.scope != "function":
                    late.append(f"{name} {sorted(route.methods or ())} {route.path}")
    assert seen > 50, "the walk found too few session dependencies to mean anything"
    assert late == []


def _post_project(server: BackgroundServer, headers: dict[str, str], project_id: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        return http.post(
            "/api/v1/projects", headers=headers, json={"id": project_id, "name": "committed first"}
        )


def test_a_created_row_exists_when_the_answer_arrives(
    settings: Settings, engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tre.api.app import create_app

    real_end = deps._end

    def slow_end(session: Session, exc: BaseException | None) -> None:
        time.sleep(0.5)  # a loaded machine's commit; before the fix the answer left first
        real_end(session, exc)

    monkeypatch.setattr(deps, "_end", slow_end)
    with BackgroundServer(create_app(settings, engine)) as server:
        resp = _post_project(server, world.headers["root"], "committed-first")
        assert resp.status_code == 201, resp.text
        with session_scope(engine, read_only=True) as s:
            assert s.get(Project, "committed-first") is not None


def test_a_commit_that_fails_is_the_answer_not_a_lost_201(
    settings: Settings, engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tre.api.app import create_app

    real_end = deps._end

    def failing_commit(session: Session, exc: BaseException | None) -> None:
        if exc is None:
            session.rollback()
            session.close()
            raise DatabaseBusy("the database is busy with other writes; try again shortly")
        real_end(session, exc)

    monkeypatch.setattr(deps, "_end", failing_commit)
    with BackgroundServer(create_app(settings, engine)) as server:
        resp = _post_project(server, world.headers["root"], "never-committed")
        assert resp.status_code == 503, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["detail"]
        with session_scope(engine, read_only=True) as s:
            assert s.get(Project, "never-committed") is None
