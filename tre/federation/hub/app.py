"""The hub's application: the platform's API machinery (tokens, problem documents, limits,
audit log) around the federation's routes. A hub is a tre deployment of its own: its users,
projects and code uploads live in its own database, its audit log is signed by its own key."""

from __future__ import annotations

import re

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.types import Receive, Scope, Send

from tre import __version__, audit
from tre.api.deps import database_slots
from tre.api.docs_pages import router as docs_router
from tre.api.limits import BodySizeLimit, RequestSanity
from tre.api.problems import install_problem_handlers
from tre.api.routers import code, me
from tre.api.security_headers import SecurityHeaders
from tre.audit import api as audit_api
from tre.audit.refusals import flush_at_shutdown, install_refusal_audit, keep_on_disk
from tre.auth.tokens import TokenVerifier
from tre.config import Settings, get_settings
from tre.federation.hub import agent_routes, routes, tes
from tre.federation.hub.refusals import CodeQuotaAudit, NodeRefusals
from tre.federation.keys import hub_key
from tre.store.db import init_db, make_engine

# A node uploads one released file per request; the default policy allows 50 MiB per file.
MAX_RELEASED_FILE_BYTES = 64 << 20
_RELEASED_FILE = re.compile(r"^/hub/v1/agent/children/[0-9a-f]{32}/files/[0-9a-f]{64}$")


class HubBodyLimits(BodySizeLimit):
    """The platform's body bounds, with a larger one for a node's released-file upload."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and scope.get("method") == "PUT" and _RELEASED_FILE.match(path):
            await BodySizeLimit(self.app, MAX_RELEASED_FILE_BYTES)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


HUB_UNROUTED = (
    "this is a federation hub, not a tre node: it runs no jobs itself, so it has no such route; "
    "follow federated jobs with tre hub jobs, tre hub job show JOB and tre hub results JOB -o DIR "
    "(docs/federation.md)"
)


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
        # Its /docs from this origin, as the API's (`tre.api.docs_pages`), not FastAPI's CDN pages.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.verifier = TokenVerifier(settings)
    app.state.hub_key = hub_key(settings)
    # A single tre's commands pointed at the hub (`tre jobs`, `tre logs`, `tre submit --wait`)
    # reach routes it does not have: its 404/405 say what this is and what to use instead.
    app.state.unrouted_hint = HUB_UNROUTED
    app.state.write_gate = anyio.Lock()
    app.state.db_slots = anyio.Semaphore(database_slots(engine))
    # Agent requests refused (unsigned, unknown, revoked, forged, stale, replayed): audited
    # with fixed reasons, aggregated per window (`tre.federation.hub.refusals`).
    app.state.node_refusals = NodeRefusals()
    keep_on_disk(app, app.state.node_refusals)  # unwritten entries survive a killed hub
    flush_at_shutdown(app, app.state.node_refusals)  # the window's repeats survive a restart
    install_problem_handlers(app)
    install_refusal_audit(app)  # people's 401/403/404, as on any tre: recorded, aggregated
    app.add_middleware(CodeQuotaAudit, path=code.UPLOAD_PATH)  # a code archive over quota
    app.add_middleware(HubBodyLimits, overrides={code.UPLOAD_PATH: code.MAX_CODE_UPLOAD_BYTES})
    app.add_middleware(RequestSanity)
    app.add_middleware(SecurityHeaders)  # no script, framing, sniffing or caching by default
    # The hub's own signed audit log of the federation, read by auditors as on any tre.
    routers = (
        docs_router,
        me.router,
        code.router,
        routes.router,
        agent_routes.router,
        audit_api.router,
        tes.router,
    )
    for router in routers:
        app.include_router(router)
    return app
