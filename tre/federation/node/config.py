"""Which hub a node works for, under which name, and the hub key it pins (``federation.json``
in the state directory, written by `tre node join`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tre import registry
from tre.config import Settings
from tre.errors import TreError
from tre.federation.signing import parse_public_key

CONFIG_FILE = "federation.json"


@dataclass(frozen=True)
class NodeConfig:
    node: str
    hub_url: str
    hub_key: str

    def hub_public_key(self) -> Ed25519PublicKey:
        return parse_public_key(self.hub_key)


def config_path(settings: Settings) -> Path:
    return settings.home / CONFIG_FILE


def join(settings: Settings, node: str, hub_url: str, hub_key: str) -> NodeConfig:
    registry.check_slug("node", node)
    parsed = urlsplit(hub_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TreError(f"the hub URL {hub_url!r} is not an http(s) address")
    try:
        parse_public_key(hub_key)
    except ValueError as exc:
        raise TreError(f"hub key: {exc}") from exc
    config = NodeConfig(node=node, hub_url=hub_url.rstrip("/"), hub_key=hub_key.strip())
    settings.ensure_dirs()
    path = config_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(config), indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return config


def load(settings: Settings) -> NodeConfig:
    path = config_path(settings)
    try:
        data = json.loads(path.read_text())
        return NodeConfig(node=str(data["node"]), hub_url=str(data["hub_url"]), hub_key=str(data["hub_key"]))
    except FileNotFoundError as exc:
        raise TreError(f"this node has not joined a hub ({path} is missing): run `tre node join`") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TreError(f"{path} is not a federation config ({exc}); run `tre node join` again") from exc
