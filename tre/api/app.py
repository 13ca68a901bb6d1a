"""Application factory: wires settings, database, token verifier, routers and error handlers."""

from __future__ import annotations

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine

from tre import __version__, audit
from tre.api.deps import database_slots, mark_read_only_routes
from tre.api.docs_pages import router as docs_router
from tre.api.head import HeadAsGet
from tre.api.limits import BodySizeLimit, RequestSanity
from tre.api.openapi import install_openapi
from tre.api.problems import install_problem_handlers, register_problem_page
from tre.api.read_cache import ReadAnswers, ReadCache
from tre.api.security_headers import SecurityHeaders
from tre.audit.refusals import install_refusal_audit
from tre.auth.tokens import TokenVerifier
from tre.auth.user_cache import UserAccessCache
from tre.config import Settings, get_settings
from tre.store.db import init_db, make_engine
from tre.store.version import StoreVersion


def create_app(
    settings: Settings | None = None, engine: Engine | None = None, migrate: bool = True
) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()
    engine = engine or make_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    if migrate:
        init_db(engine)
    # The audit log signs with this deployment's key (created here on first start).
    audit.configure(engine, settings.keys_dir)
    # Image removals a crash interrupted: put back or freed, as the database decided.
    from tre.images.catalog import recover_image_store

    recover_image_store(settings, engine)

    app = FastAPI(
        title="tre — trusted research environment",
        version=__version__,
        description="Sandboxed imaging jobs next to the data; outputs leave only through the airlock.",
        # FastAPI's pages load their scripts from CDNs: ours are served here (`tre.api.docs_pages`).
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.verifier = TokenVerifier(settings)
    app.state.user_cache = UserAccessCache()  # users' enabled flag and roles, a few seconds
    # Writing requests queue here, in the event loop (see `tre.api.deps.get_session`).
    app.state.write_gate = anyio.Lock()
    app.state.db_slots = anyio.Semaphore(database_slots(engine))
    install_problem_handlers(app)

    from egress_review import api as egress_api
    from egress_review.panel import oidc as panel_oidc
    from egress_review.panel import routes as panel_routes
    from tre.api.routers import (
        admin,
        auth_config,
        catalogue,
        code,
        datasets,
        images,
        jobs,
        me,
        projects,
    )
    from tre.api.routers import tes as tes_api
    from tre.audit import api as audit_api

    # The two upload routes stream their bodies with their own bounds; everything else is small.
    uploads = {
        "/api/v1/images": settings.image_max_upload_mb << 20,
        code.UPLOAD_PATH: code.MAX_CODE_UPLOAD_BYTES,
    }
    # Innermost: its 413 is raised straight into the route's body parsing (an http middleware
    # between the two would turn it into a 400).
    app.add_middleware(BodySizeLimit, overrides=uploads)
    if settings.api_read_cache:
        # Hot reads answered while the database is unchanged (`tre.api.read_cache`); inside
        # the refusal audit and request sanity, which still see every request.
        app.state.read_answers = ReadAnswers()
        app.add_middleware(ReadCache, version=StoreVersion(engine), answers=app.state.read_answers)
    install_refusal_audit(app)  # 401/403/404 recorded, aggregated
    # Added last, so it runs first: before the body is read or a token looked at.
    app.add_middleware(RequestSanity)
    # Outermost: a HEAD is a GET to everything inside (auth, audit, cache), minus the body.
    app.add_middleware(HeadAsGet)
    # Around everything, errors from the middlewares above included: no script, framing,
    # sniffing or caching unless a route chose otherwise (`tre.api.security_headers`).
    app.add_middleware(SecurityHeaders)

    routers = (me, auth_config, admin, projects, datasets, catalogue, jobs, code, images, egress_api)
    for module in (*routers, panel_routes, panel_oidc, audit_api):
        app.include_router(module.router)
    app.include_router(docs_router)
    # Errors under /panel are pages for a browser (the panel's own), problems for the rest.
    register_problem_page(app, "/panel", panel_routes.problem_page)
    app.include_router(tes_api.router)  # GA4GH TES 1.1 at /ga4gh/tes/v1 (docs/tes.md)
    # The core's GET routes only read (checked by their tests); the airlock's and the audit
    # log's GETs audit who looked, so they keep writing transactions.
    for module in (me, admin, projects, datasets, jobs):
        mark_read_only_routes(module.router.routes)
    install_openapi(app)
    return app
