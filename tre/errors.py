"""Domain errors shared by the API, the CLI and the worker.

Services raise these with a sentence a user can act on; the API maps them to problem
documents (status from the class) and the CLI prints the sentence.
"""

from __future__ import annotations


class TreError(Exception):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class NotFound(TreError):
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
