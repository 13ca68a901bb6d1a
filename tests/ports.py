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


def bound_socket(port: int | None = None) -> socket.socket:
    """A TCP socket bound on 127.0.0.1 (``port``, or a `free_port`), held by the caller until
    its server takes it over: nothing can take the port between choosing it and serving on
    it, however long the set-up in between (an OIDC provider that must know the address
    first takes seconds to start on a loaded machine)."""
    for _ in range(200):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port if port is not None else free_port()))
        except OSError:
            sock.close()
            if port is not None:
                raise
            continue
        return sock
    raise RuntimeError("no free port could be bound")
