"""Run the `tre` CLI with every outgoing socket connection written down (no tests here).

``python tests/federation/connect_audit.py LOGFILE ARGS...`` installs a PEP 578 audit hook
that appends the address of every ``socket.connect`` (and ``connect_ex``) made in this
process, by any library, to LOGFILE, then runs ``tre ARGS...``. The federation tests run the
hub under it to prove the hub never connects to a node."""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    log_path = sys.argv[1]
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's whole life

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.connect", "socket.connect_ex"):
            sock, address = args[0], args[1]
            if getattr(sock, "family", None) is not None and sock.family.name in ("AF_INET", "AF_INET6"):
                log.write(f"{address!r}\n")

    sys.addaudithook(hook)
    sys.argv = ["tre", *sys.argv[2:]]
    from tre.cli.main import run

    run()


if __name__ == "__main__":
    main()
