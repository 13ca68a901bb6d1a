"""Whether a server command can listen where it was told to, asked before it starts anything.

Why: uvicorn reports a taken port only after the app (and `tre serve`'s job worker) has
started, as a log line of its own ("ERROR: [Errno 98] ...") and exit status 3. A newcomer
who runs `tre serve` twice, or the demo beside a running server, should get the CLI's one
line saying what to do, and no second worker claiming jobs for a server that never listened.
"""

from __future__ import annotations

import errno
import socket

from tre.errors import TreError


def ensure_can_listen(host: str, port: int, command: str) -> None:
    """Bind and release ``host:port`` as uvicorn will (IPv6 when the host has a colon, else
    IPv4; ``SO_REUSEADDR``), or raise a `TreError` naming the address, the reason and the way
    out (another port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as exc:
            raise TreError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from exc
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise TreError(
                    f"cannot listen on {host}:{port}: the address is already in use (is another "
                    f"`{command}` running? stop it, or choose another one with --port)"
                ) from exc
            raise TreError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
