"""The hub's application: the platform's API machinery (tokens, problem documents, limits,
audit log) around the federation's routes. A hub is a tre deployment of its own: its users,
projects and code uploads live in its own database, its audit log is signed by its own key."""

from __future__ import annotations

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine

from tre import __version__, audit
from tre.api.deps import database_slots
from tre.api.limits import BodySizeLimit, RequestSanity
from tre.api.problems import install_problem_handlers
from tre.api.routers import code, me
from tre.auth.tokens import TokenVerifier
from tre.config import Settings, get_settings
from tre.federation.hub import agent_routes, routes
from tre.federation.keys import hub_key
from tre.store.db import init_db, make_engine


def create_hub_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()
    engine = engine or make_engine(settings.resolved_database_url)
    init_db(engine)
    audit.configure(engine, settings.keys_dir)
    app = FastAPI(
        title="tre hub — federated submission and search",
        version=__version__,
        description="One submission, several data holders; each node decides for itself.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.verifier = TokenVerifier(settings)
    app.state.hub_key = hub_key(settings)
    app.state.write_gate = anyio.Lock()
    app.state.db_slots = anyio.Semaphore(database_slots(engine))
    install_problem_handlers(app)
    # Released files come one per request, within the platform's ordinary body bound.
    app.add_middleware(BodySizeLimit, overrides={code.UPLOAD_PATH: code.MAX_CODE_UPLOAD_BYTES})
    app.add_middleware(RequestSanity)
    for router in (me.router, code.router, routes.router, agent_routes.router):
        app.include_router(router)
    return app
