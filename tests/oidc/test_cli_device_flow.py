"""`tre login --oidc`: the device authorization grant (RFC 8628) against the real provider.

A real `tre` subprocess prints the address and code; the person's part (type the code,
sign in, consent) happens in Chromium, as it would on the researcher's phone or laptop.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import jwt
import pytest

from tests.api.test_cli_for_people import one_line_error, tre
from tests.oidc.test_panel_sign_in import provider_login
from tre.cli.client import EMBEDDED_HINT, ApiClient, TokenRefused

pytestmark = pytest.mark.browser

CODE_LINE = re.compile(r"open (\S+) in a browser and enter the code (\S+)")
STEP_TIMEOUT_MS = 120_000
# The provider's access tokens in the expiry test: long enough for the login to finish and
# one `tre whoami` (two Python processes started on a loaded machine) within the token's
# life; before, 15 s, and on a loaded 2-core machine the token sometimes expired before that
# whoami ran. The test then waits for the token's own `exp`, not a fixed time.
ACCESS_TOKEN_TTL_S = 60


def cli_env(settings, live) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "TRE_HOME": str(settings.home), "TRE_API_URL": live.url}
    env.pop("TRE_TOKEN", None)
    return env


def start_login(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tre.cli.main", "login", "--oidc"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(5):
        line = proc.stdout.readline()
        found = CODE_LINE.search(line)
        if found:
            return proc, found.group(1), found.group(2)
    proc.kill()
    raise AssertionError(
        f"no verification address printed: {line!r} {proc.stderr.read() if proc.stderr else ''}"
    )


def enter_code(browser, url: str, code: str, username: str | None, approve: bool = True):  # type: ignore[no-untyped-def]
    """The person's side: type the code, confirm the device, sign in, consent."""
    context = browser.new_context()
    # Each step waits for its page, however loaded the machine: Playwright's 30 s default
    # was what a loaded 2-core machine sometimes needed for the provider's first page.
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    page.fill("input[name=user_code]", code)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Confirm Device")
    if not approve:
        page.click("button[name=abort]")
        return context
    page.click("button:has-text('Continue')")
    provider_login(page, str(username))
    page.wait_for_selector("text=Sign-in Success")
    return context


def test_device_flow_login_saves_an_api_token_and_expiry_says_how_to_renew(
    browser, oidc_world_factory, settings
) -> None:
    world = oidc_world_factory(access_token_ttl_s=ACCESS_TOKEN_TTL_S, clock_leeway_s=0)
    env = cli_env(settings, world.live)
    proc, url, code = start_login(env)
    assert url.startswith(world.issuer)  # the provider's own page, not one the API serves
    context = enter_code(browser, url, code, "alice")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, (out, err)
    assert "logged in to" in out and "alice" in out and "researcher" in out
    saved = json.loads((Path(settings.home) / "credentials.json").read_text())
    assert saved["issuer"] == world.issuer and saved["api_url"] == world.live.url
    assert oct((Path(settings.home) / "credentials.json").stat().st_mode & 0o777) == "0o600"
    whoami = tre(env, "whoami")
    assert whoami.returncode == 0 and whoami.stdout.startswith("alice roles=researcher")
    context.close()
    # The API allows no clock leeway here: wait until the token's own expiry has passed.
    expires = jwt.decode(saved["token"], options={"verify_signature": False})["exp"]
    assert expires - time.time() <= ACCESS_TOKEN_TTL_S
    time.sleep(max(0.0, expires + 1 - time.time()))
    line = one_line_error(tre(env, "whoami"), 1, "expired", "tre login --oidc", world.issuer)
    assert "Traceback" not in line


def test_device_flow_refused_by_the_person_is_one_line(browser, oidc_world, settings) -> None:
    env = cli_env(settings, oidc_world.live)
    proc, url, code = start_login(env)
    context = enter_code(browser, url, code, None, approve=False)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, (out, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines == ["error: the sign-in was refused at the OpenID provider; nothing was saved"]
    assert not (Path(settings.home) / "credentials.json").exists()
    context.close()


def test_login_oidc_against_an_embedded_api_says_what_to_do(settings, engine) -> None:
    from tests.egress.test_workflow_support import LiveServer
    from tre.api.app import create_app

    with LiveServer(create_app(settings, engine)) as live:
        env = cli_env(settings, live)
        one_line_error(tre(env, "login", "--oidc"), 1, "no OpenID provider", "tre admin token")
        refused = _refused_line(live.url)  # an embedded API: only the admin's token helps
        assert refused.endswith(EMBEDDED_HINT) and "--oidc" not in refused, refused


def _refused_line(api_url: str) -> str:
    """The one line a refused token gets, in process (no saved login: TRE_HOME is the test's)."""
    with pytest.raises(TokenRefused) as info:
        ApiClient(api_url=api_url, token="not-a-token").get("/api/v1/me")
    return str(info.value)


def test_plain_login_on_a_terminal_finds_the_provider(oidc_world, settings) -> None:
    """`tre login` without --oidc, typed at a terminal (a pseudo-terminal from util-linux
    `script`), asks the API how to sign in and starts the device flow instead of a prompt.
    A token the API refuses (an embedded one, kept from before it moved to the provider) is
    told to sign in there, not first to ask an admin for a token (newcomer round 23)."""
    refused = _refused_line(oidc_world.live.url)
    assert refused.endswith(f"this API signs people in at {oidc_world.issuer}: run `tre login --oidc`")
    env = cli_env(settings, oidc_world.live)
    command = f"{sys.executable} -m tre.cli.main login"
    proc = subprocess.Popen(
        ["script", "-qec", command, "/dev/null"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 120  # a condition waited on, not a fixed time
        while time.monotonic() < deadline and not CODE_LINE.search("".join(seen)):
            time.sleep(0.2)
        found = CODE_LINE.search("".join(seen))
        assert found, "".join(seen)  # a token prompt instead would leave no such line
        assert found.group(1).startswith(oidc_world.issuer) and "Token" not in "".join(seen)
    finally:
        proc.kill()
        proc.wait()
