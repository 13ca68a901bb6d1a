"""Fixtures of the panel's browser tests: Debian Chromium driven by Playwright, and the real
app served on loopback."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.egress.test_workflow_support import LiveServer, with_egress_routes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def _chromium():  # type: ignore[no-untyped-def]
    """One Chromium per test module: launching it for each test cost seconds apiece on CI's
    two shared cores. Tests stay apart through their own browser contexts (cookies, storage,
    pages), which `browser` closes after each test."""
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI: scripts/install-system-deps must install it")
        pytest.skip("Debian chromium not installed (run scripts/install-system-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = [p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)]

        def current():  # type: ignore[no-untyped-def]
            # A test that crashed or closed the browser does not take the next ones with it.
            if not launched[0].is_connected():
                launched[0] = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            return launched[0]

        yield current
        if launched[0].is_connected():
            launched[0].close()


@pytest.fixture
def browser(_chromium):  # type: ignore[no-untyped-def]
    """The module's Chromium; every context a test opened is closed when it ends."""
    b = _chromium()
    yield b
    if b.is_connected():
        for context in list(b.contexts):
            context.close()


@pytest.fixture
def live(app, esettings):  # type: ignore[no-untyped-def]
    with LiveServer(with_egress_routes(app)) as server:
        yield server
