"""How to sign in to this API: the one route that answers without a token.

A CLI that has no token yet must learn where to get one: `tre login` asks here whether an
OpenID provider is configured and, if so, its issuer and the public client the CLI uses for
the device authorization grant (RFC 8628). Everything here is public by nature (the
provider's own discovery document says more); no user, project or deployment detail is.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from tre.api.deps import get_settings_dep
from tre.config import Settings

router = APIRouter(prefix="/api/v1", tags=["auth"])


class AuthConfigOut(BaseModel):
    """Where tokens for this API come from."""

    mode: Literal["embedded", "oidc"] = Field(description="embedded: an admin mints tokens; oidc: a provider")
    issuer: str | None = Field(default=None, description="The OpenID provider's issuer URL (oidc only).")
    cli_client_id: str | None = Field(
        default=None, description="The public client `tre login --oidc` uses for the device flow."
    )
    scopes: str | None = Field(default=None, description="Scopes to request, space-separated.")
    audience: str = Field(description="The audience an access token for this API must carry.")


@router.get("/auth/config", response_model=AuthConfigOut, summary="How to sign in (no token needed)")
def auth_config(settings: Settings = Depends(get_settings_dep)) -> AuthConfigOut:
    if settings.auth_mode != "oidc" or not settings.oidc_issuer:
        return AuthConfigOut(mode=settings.auth_mode, audience=settings.token_audience)
    return AuthConfigOut(
        mode="oidc",
        issuer=settings.oidc_issuer,
        cli_client_id=settings.oidc_cli_client_id,
        scopes=settings.oidc_scopes,
        audience=settings.token_audience,
    )
