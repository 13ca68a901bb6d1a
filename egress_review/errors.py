"""One error type for every refusal in the airlock, independent of the web layer.

The service refuses in terms of HTTP status, a stable slug and a human reason so the API,
the panel and the CLI can all show the same clear sentence. ``audited`` tells the caller
that the refusal itself was written to the audit log in the current transaction and must be
committed even though the action failed (a tampered file must leave a trace).
"""

from __future__ import annotations


class EgressError(Exception):
    def __init__(self, status: int, title: str, detail: str, slug: str, *, audited: bool = False) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.audited = audited


def not_found(what: str) -> EgressError:
    return EgressError(404, "Not found", f"{what} does not exist or is not visible to you", "not-found")


def forbidden(detail: str, slug: str = "forbidden") -> EgressError:
    return EgressError(403, "Forbidden", detail, slug)


def conflict(detail: str, slug: str) -> EgressError:
    return EgressError(409, "Conflict", detail, slug)
