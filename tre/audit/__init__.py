"""Signed, tamper-evident audit log (RFC 9162 Merkle tree, C2SP signed checkpoints).

Everything security-relevant calls ``record_event``. The names are resolved lazily so that
``tre.audit.verify`` (and its imports, ``merkle`` and ``note``) can be used by an auditor
with nothing installed but the standard library and ``cryptography``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tre.audit.log import AuditEvent, checkpoint, record_event, record_events
    from tre.audit.signing import configure

__all__ = ["AuditEvent", "checkpoint", "configure", "record_event", "record_events"]


def __getattr__(name: str) -> Any:
    if name in ("AuditEvent", "checkpoint", "record_event", "record_events"):
        from tre.audit import log

        return getattr(log, name)
    if name == "configure":
        from tre.audit import signing

        return signing.configure
    raise AttributeError(f"module 'tre.audit' has no attribute {name!r}")
