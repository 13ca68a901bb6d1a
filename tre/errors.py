"""Domain errors shared by the API, the panel, the CLI and the worker — core and airlock alike.

Services raise these with a sentence a user can act on; the API maps them to problem
documents once (status from the class, a stable slug and title that an instance may refine)
and the CLI prints the sentence. ``audited`` marks a refusal that was itself written to the
audit log in the current transaction: the one session helper that settles transactions
(`tre.store.db.settle`) commits that record even though the action failed, so a refused
self-approval or a tampered download always leaves its trace.
"""

from __future__ import annotations


class TreError(Exception):
    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(
        self, detail: str = "", *, slug: str | None = None, title: str | None = None, audited: bool = False
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        self.audited = audited


class NotFound(TreError):
    """Also the answer for what exists but is not the caller's: ids are never an oracle."""

    status = 404
    title = "Not found"
    slug = "not-found"


class Forbidden(TreError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class Conflict(TreError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Unprocessable(TreError):
    """The request is well-formed but its content breaks a rule (no files named, bad vote)."""

    status = 422
    title = "Invalid request"
    slug = "invalid-request"


class AdmissionDenied(TreError):
    """A job was refused before it ran: no grant, image not allowed, over quota..."""

    status = 403
    title = "Job not admitted"
    slug = "job-not-admitted"


class PolicyUnavailable(TreError):
    """A dataset's policy file is missing or invalid: nothing may run or leave until fixed."""

    status = 503
    title = "Policy unavailable"
    slug = "policy-unavailable"
