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


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI: scripts/install-system-deps must install it")
        pytest.skip("Debian chromium not installed (run scripts/install-system-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def live(app, esettings):  # type: ignore[no-untyped-def]
    with LiveServer(with_egress_routes(app)) as server:
        yield server
