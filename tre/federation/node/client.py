"""The agent's HTTP client: every request signed with the node key, every answer checked
against the pinned hub key before the agent acts on it. Outbound only."""

from __future__ import annotations

import json
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tre.federation.node.config import NodeConfig
from tre.federation.signing import NONCE, SignatureError, sign_request, verify_response


class HubError(Exception):
    """The hub could not be reached, refused the request, or answered unsigned."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HubClient:
    def __init__(self, config: NodeConfig, key: Ed25519PrivateKey, timeout_s: float = 60.0) -> None:
        self.config = config
        self.key = key
        self.hub_key = config.hub_public_key()
        self.http = httpx.Client(base_url=config.hub_url, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> bytes:
        headers = sign_request(self.key, self.config.node, method, path, body)
        headers["content-type"] = content_type
        try:
            resp = self.http.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise HubError(f"the hub is unreachable: {type(exc).__name__}") from exc
        if resp.status_code >= 400:
            raise HubError(f"the hub refused {method} {path}: HTTP {resp.status_code}", resp.status_code)
        try:
            verify_response(self.hub_key, resp.status_code, headers[NONCE], resp.headers, resp.content)
        except SignatureError as exc:
            raise HubError(
                f"the hub's answer to {method} {path} is not signed by the pinned key: {exc}"
            ) from exc
        return resp.content

    def json(self, method: str, path: str, payload: Any = None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        return json.loads(self.request(method, path, body))
