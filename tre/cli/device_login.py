"""`tre login --oidc`: the OAuth 2.0 Device Authorization Grant (RFC 8628) against the
OpenID provider the API names.

The CLI has no browser and no redirect address, so it asks the provider for a device code,
shows the person the verification address and the short user code to type there (in any
browser, on any machine), and polls the token endpoint at the interval the provider asks
for until the person has signed in, refused, or the code expired. The resulting access token
is the same JWT the API verifies for every call; nothing but it is saved.

What the provider sends back is shown through `terminal_safe`: a provider is trusted to
sign tokens, not to drive the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tre.auth.oidc import (
    Discovery,
    OidcError,
    TokenEndpointError,
    fetch_discovery,
    require_secure_issuer,
    token_request,
)
from tre.cli.client import CliError, problem_message
from tre.cli.output import terminal_safe

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5
SLOW_DOWN_STEP_S = 5  # RFC 8628 3.5
HTTP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class OidcLogin:
    """What the API says about signing in to it (``GET /api/v1/auth/config``)."""

    issuer: str
    client_id: str
    scopes: str


def oidc_login_config(api_url: str) -> OidcLogin | None:
    """The API's OIDC sign-in settings, or None when it uses the embedded issuer."""
    try:
        resp = httpx.get(f"{api_url}/api/v1/auth/config", timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the tre API at {api_url} ({exc}); is the address right (--api-url or TRE_API_URL)?"
        ) from exc
    if resp.status_code != 200:
        raise CliError(f"the API would not say how to sign in: {problem_message(resp)}")
    body = resp.json()
    if not isinstance(body, dict) or body.get("mode") != "oidc" or not body.get("issuer"):
        return None
    if not body.get("cli_client_id"):
        raise CliError(
            f"the API takes tokens from {terminal_safe(str(body['issuer']))} but names no client for the "
            "CLI (TRE_OIDC_CLI_CLIENT_ID); ask your administrator"
        )
    return OidcLogin(
        issuer=str(body["issuer"]),
        client_id=str(body["cli_client_id"]),
        scopes=str(body.get("scopes") or "openid"),
    )


def device_login(
    login: OidcLogin,
    show: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Run the device flow to the end and return the access token (or raise `CliError`)."""
    discovery = _discover(login.issuer)
    if not discovery.device_authorization_endpoint:
        raise CliError(
            f"the OpenID provider {terminal_safe(login.issuer)} does not offer the device flow; "
            "ask your administrator for another way to get a token"
        )
    grant = _request_device_code(discovery.device_authorization_endpoint, login)
    where = terminal_safe(str(grant.get("verification_uri", "")))
    code = terminal_safe(str(grant.get("user_code", "")))
    show(f"To sign in, open {where} in a browser and enter the code {code}")
    complete = grant.get("verification_uri_complete")
    if isinstance(complete, str) and complete:
        show(f"(or open {terminal_safe(complete)} , which fills in the code)")
    show("Waiting for you to sign in there (Ctrl-C to give up)...")
    return _poll(discovery, login, grant, sleep)


def _discover(issuer: str) -> Discovery:
    try:
        require_secure_issuer(issuer)
        return fetch_discovery(issuer, HTTP_TIMEOUT_S)
    except OidcError as exc:
        raise CliError(terminal_safe(str(exc))) from exc


def _request_device_code(url: str, login: OidcLogin) -> dict[str, Any]:
    try:
        resp = httpx.post(
            url, data={"client_id": login.client_id, "scope": login.scopes}, timeout=HTTP_TIMEOUT_S
        )
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the OpenID provider's device endpoint {terminal_safe(url)}: {exc}"
        ) from exc
    try:
        grant = resp.json()
    except ValueError:
        grant = None
    if resp.status_code != 200 or not isinstance(grant, dict) or "error" in grant:
        error = grant.get("error") if isinstance(grant, dict) else resp.status_code
        raise CliError(f"the OpenID provider refused to start a device sign-in ({terminal_safe(str(error))})")
    if not all(isinstance(grant.get(k), str) for k in ("device_code", "user_code", "verification_uri")):
        raise CliError("the OpenID provider's device answer lacks a device code, user code or address")
    return grant


def _number(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else default


def _poll(
    discovery: Discovery, login: OidcLogin, grant: dict[str, Any], sleep: Callable[[float], None]
) -> str:
    interval = _number(grant.get("interval"), DEFAULT_INTERVAL_S)
    deadline = time.monotonic() + _number(grant.get("expires_in"), 600)
    while time.monotonic() < deadline:
        sleep(interval)
        try:
            tokens = _token_request(discovery, login, grant)
        except TokenEndpointError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval += SLOW_DOWN_STEP_S
                continue
            if exc.error == "access_denied":
                raise CliError("the sign-in was refused at the OpenID provider; nothing was saved") from exc
            if exc.error == "expired_token":
                break
            raise CliError(f"the OpenID provider refused the sign-in ({terminal_safe(exc.error)})") from exc
        token = tokens.get("access_token")
        if not isinstance(token, str) or not token:
            raise CliError("the OpenID provider's answer holds no access token")
        return token
    raise CliError("the code expired before the sign-in was finished; run `tre login --oidc` again")


def _token_request(discovery: Discovery, login: OidcLogin, grant: dict[str, Any]) -> dict[str, Any]:
    try:
        return token_request(
            discovery.token_endpoint,
            DEVICE_GRANT,
            client_id=login.client_id,
            timeout_s=HTTP_TIMEOUT_S,
            device_code=str(grant["device_code"]),
        )
    except TokenEndpointError:
        raise
    except OidcError as exc:
        raise CliError(terminal_safe(str(exc))) from exc
