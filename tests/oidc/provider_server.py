"""The test suite's OpenID provider: the certified npm package `oidc-provider` on Debian's
Node.js, configured by ``tests/oidc/provider/provider.mjs`` (no tests here).

Its node_modules are installed once with ``npm ci`` from the committed package-lock.json
into ``.tools/oidc-provider`` (gitignored; `scripts/install-tools` does the same), and
reinstalled only when the lock file changes. Each test starts its own provider process on
127.0.0.1 with a free port; it calls itself ``http://localhost:<port>``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import IO

PROVIDER_SRC = Path(__file__).resolve().parent / "provider"
REPO = PROVIDER_SRC.parents[2]
INSTALL_DIR = REPO / ".tools" / "oidc-provider"
NPM_TIMEOUT_S = 600
START_TIMEOUT_S = 30


class ProviderUnavailable(Exception):
    """Node.js or npm is missing here; the message says what to install."""


def _lock_digest() -> str:
    return hashlib.sha256((PROVIDER_SRC / "package-lock.json").read_bytes()).hexdigest()


def ensure_installed(target: Path = INSTALL_DIR) -> Path:
    """The folder holding provider.mjs and its node_modules, installed if missing or stale."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise ProviderUnavailable(
                f"{tool} is not installed: the OIDC tests run the npm package oidc-provider on "
                "Debian's Node.js (scripts/install-system-deps installs nodejs and npm)"
            )
    target.mkdir(parents=True, exist_ok=True)
    stamp = target / ".lock-sha256"
    with open(target / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs install once
        fresh = (target / "node_modules" / "oidc-provider" / "package.json").is_file()
        if not (fresh and stamp.is_file() and stamp.read_text() == _lock_digest()):
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(PROVIDER_SRC / name, target / name)
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target,
                check=True,
                timeout=NPM_TIMEOUT_S,
            )
            stamp.write_text(_lock_digest())
        shutil.copyfile(PROVIDER_SRC / "provider.mjs", target / "provider.mjs")
    return target


class OidcProviderProcess:
    """One provider process: ``with OidcProviderProcess(...) as idp: idp.issuer``."""

    def __init__(
        self,
        panel_url: str,
        accounts: dict[str, list[str]],
        client_secret: str,
        log_path: Path,
        access_token_ttl_s: int = 600,
    ) -> None:
        self.panel_url = panel_url
        self.accounts = accounts
        self.client_secret = client_secret
        self.log_path = log_path
        self.access_token_ttl_s = access_token_ttl_s
        self.issuer = ""
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def __enter__(self) -> OidcProviderProcess:
        folder = ensure_installed()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "TRE_TEST_OIDC_PANEL_URL": self.panel_url,
            "TRE_TEST_OIDC_ACCOUNTS": json.dumps(self.accounts),
            "TRE_TEST_OIDC_SECRET": self.client_secret,
            "TRE_TEST_OIDC_ACCESS_TTL": str(self.access_token_ttl_s),
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(
            ["node", "provider.mjs"],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not line or not line[0].strip():
            self.__exit__()
            raise RuntimeError(f"the OIDC provider did not start; see {self.log_path}")
        self.issuer = json.loads(line[0])["issuer"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
