"""The federation identities: the hub's key and a node agent's key, PEM files in the state
directory's private ``keys`` folder (made on first use, mode 0600)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

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


def rotate_node_key(settings: Settings) -> Ed25519PrivateKey:
    """A new agent key for this node (`tre node key --rotate`). The old file is kept beside it
    (``federation-node.pem.replaced-<UTC time>``, still 0600) rather than deleted: a running
    agent signs with the key it loaded at its start until it is restarted, and the hub takes
    both during the rotation's overlap (`tre hub node rotate-key`)."""
    settings.ensure_dirs()
    current = settings.keys_dir / NODE_KEY_FILE
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    try:
        os.replace(current, current.with_name(f"{NODE_KEY_FILE}.replaced-{stamp}"))
    except FileNotFoundError:
        pass  # no key yet: the first one is made below
    return node_key(settings)
