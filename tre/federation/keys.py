"""The federation identities: the hub's key and a node agent's key, PEM files in the state
directory's private ``keys`` folder (made on first use, mode 0600)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tre.auth.keys import load_or_create_ed25519
from tre.config import Settings

HUB_KEY_FILE = "federation-hub.pem"
NODE_KEY_FILE = "federation-node.pem"


def hub_key(settings: Settings) -> Ed25519PrivateKey:
    settings.ensure_dirs()
    return load_or_create_ed25519(settings.keys_dir / HUB_KEY_FILE)


def node_key(settings: Settings) -> Ed25519PrivateKey:
    settings.ensure_dirs()
    return load_or_create_ed25519(settings.keys_dir / NODE_KEY_FILE)
