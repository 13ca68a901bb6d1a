"""A TCP port for a test server to listen on, outside the kernel's ephemeral port range.

Why: a port found by binding port 0 comes from the ephemeral range that every outgoing
connection on the machine draws from too. Between closing that probe and the server's own
bind, a client connection of another test, site or process can take the port, and the
server fails with "address already in use" (seen in the federation test, node-c). Ports below
the range are never handed out to outgoing connections, so only another server choosing the
same free port at the same moment could collide, and the random choice makes that rare.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, below the ephemeral range."""
    high = _ephemeral_low()
    low = max(1025, high - 12000)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found in {low}-{high - 1}")
