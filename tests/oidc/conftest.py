"""Fixtures of the OIDC tests: a real OpenID provider (npm oidc-provider on Node.js), the
app configured for it and served on loopback, and Debian Chromium for the browser steps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from tests.egress.conftest import _chromium, browser  # noqa: F401 - the same Chromium fixtures
from tests.egress.test_workflow_support import LiveServer
from tests.oidc.provider_server import OidcProviderProcess, ProviderUnavailable, ensure_installed
from tests.ports import bound_socket
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import User, UserRole

PANEL_CLIENT = "tre-panel"
CLI_CLIENT = "tre-cli"
PANEL_SECRET = "panel-secret-for-tests-only-0123456789abcdef"  # noqa: S105 - a test client's secret
# Who the provider lets sign in, with the tre roles it puts in the tokens; the user table
# below knows the same people (an account tre does not know is refused by tre).
ACCOUNTS = {"dana": ["dac"], "alice": ["researcher"], "adam": ["admin"], "mallory": ["dac"]}
USERS = {"dana": ["dac"], "alice": ["researcher"], "adam": ["admin"]}


@dataclass
class OidcWorld:
    issuer: str
    settings: Settings
    live: LiveServer
    provider: OidcProviderProcess
    app: object

    def restart_panel(self) -> None:
        """Serve the same app again on the same port (after `stop_panel`)."""
        self.live = LiveServer(self.app, port=self.live.port).__enter__()

    def stop_panel(self) -> None:
        """Take the panel off the air: the browser's next visit to it fails to connect, so
        the test can hold the provider's answer unused."""
        self.live.__exit__()


@pytest.fixture(scope="session")
def provider_installed() -> None:
    try:
        ensure_installed()
    except ProviderUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI must have them)")
        pytest.skip(str(exc))


def oidc_settings(settings: Settings, issuer: str, panel_url: str, clock_leeway_s: int = 10) -> Settings:
    return settings.model_copy(
        update={
            "token_clock_leeway_s": clock_leeway_s,
            "auth_mode": "oidc",
            "oidc_issuer": issuer,
            "oidc_client_id": PANEL_CLIENT,
            "oidc_client_secret": SecretStr(PANEL_SECRET),
            "oidc_redirect_url": f"{panel_url}/panel/oidc/callback",
            "oidc_scopes": "openid tre",
            "oidc_cli_client_id": CLI_CLIENT,
            "oidc_provider_name": "Test IdP",
            "oidc_algorithms": ["RS256"],
            "token_audience": "tre-api",
        }
    )


def seed_users(engine: Engine) -> None:
    with session_scope(engine) as s:
        for user_id, roles in USERS.items():
            s.add(User(id=user_id, display_name=user_id, roles=[UserRole(role=r) for r in roles]))


@pytest.fixture
def oidc_world_factory(provider_installed, settings: Settings, engine: Engine, tmp_path):  # type: ignore[no-untyped-def]
    """Start a provider and the app configured for it; ``access_token_ttl_s`` and the API's
    ``clock_leeway_s`` are adjustable (a test that waits for expiry keeps both short)."""
    from tre.api.app import create_app

    worlds: list[OidcWorld] = []

    def make(access_token_ttl_s: int = 600, clock_leeway_s: int = 10) -> OidcWorld:
        sock = bound_socket()  # held from here: the provider needs the address before the app runs
        port = int(sock.getsockname()[1])
        panel_url = f"http://127.0.0.1:{port}"
        idp = OidcProviderProcess(
            panel_url, ACCOUNTS, PANEL_SECRET, tmp_path / "provider.log", access_token_ttl_s
        ).__enter__()
        s = oidc_settings(settings, idp.issuer, panel_url, clock_leeway_s)
        seed_users(engine)
        app = create_app(s, engine)
        world = OidcWorld(
            issuer=idp.issuer, settings=s, live=LiveServer(app, sock=sock), provider=idp, app=app
        )
        world.live.__enter__()
        worlds.append(world)
        return world

    yield make
    for world in reversed(worlds):
        world.live.__exit__()
        world.provider.__exit__()


@pytest.fixture
def oidc_world(oidc_world_factory) -> Iterator[OidcWorld]:  # type: ignore[no-untyped-def]
    yield oidc_world_factory()
