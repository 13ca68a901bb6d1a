"""What every schemathesis pass of the suite shares (no tests here): `generate_cases` and
`judge_cases`, the one bounded loop over the API's operations, and the judges the passes have in common.

Importing it also registers, once for the process, how schemathesis sends bodies to the upload
routes (code archives, images): the generated value as raw bytes. Those routes must refuse
garbage with a 4xx, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.config._checks import (  # not re-exported by schemathesis.config
    NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
    NegativeDataRejectionConfig,
)
from schemathesis.generation.modes import GenerationMode

# A body over a route's size limit is refused 413 before it is parsed: a rejection too.
REJECTION_STATUSES = [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]


@schemathesis.serializer("application/gzip", "application/x-tar", "application/octet-stream")
def raw_bytes(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return repr(value).encode()


Judge = Callable[[Any, Any, Any], "str | None"]

# Operations that revoke the token they are called with: no parameters or body to fuzz, and a
# pass would sign out the token every later operation uses (tests/security/test_token_revocation.py).
SIGNS_OUT = frozenset({"POST /api/v1/auth/logout"})


Case = tuple[Any, Any]  # (operation, case)


def generate_cases(
    app: Any,
    *,
    examples: int,
    known_ids: dict[str, str] | None = None,
    negative_with_ids: bool = False,
    path_prefix: str = "",
    reproducible: int | None = None,
) -> list[Case]:
    """Requests for the app's operations (those under ``path_prefix``), generated once so that
    several callers (one per role) can send the same ones: generating is ~85 % of a pass.

    Each operation gets valid and invalid requests by the schema, and valid ones (with
    ``negative_with_ids``, invalid ones too) whose path ids name things that exist, so the
    checks behind the lookups are reached. No shrinking, no example database;
    ``reproducible``: a seed, the same requests each run.
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=REJECTION_STATUSES
    )
    cases: list[Case] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(path_prefix) or operation.label in SIGNS_OUT:
            continue
        ids = {k: v for k, v in (known_ids or {}).items() if "{" + k + "}" in operation.path}
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )
        if ids and negative_with_ids:
            strategy = strategy | operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=ids)
        if ids:
            strategy = strategy | operation.as_strategy(GenerationMode.POSITIVE, path_parameters=ids)

        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def keep(case: Any) -> None:
            cases.append((operation, case))

        # run here, so `keep` sees this loop's `operation`
        (seed(reproducible)(keep) if reproducible is not None else keep)()
    return cases


def judge_cases(cases: list[Case], headers: dict[str, str], judge: Judge) -> list[str]:
    """Send each case with ``headers``; ``judge(operation, case, response)`` says what is wrong
    with one answer (or None). Every problem is collected, so one run reports them all."""
    problems: list[str] = []
    for operation, case in cases:
        problem = judge(operation, case, case.call(headers=headers))
        if problem is not None:
            problems.append(problem)
    return problems


def error_is_a_problem_document(operation: Any, response: Any, also: tuple[str, ...] = ()) -> str | None:
    """An error answer must be an RFC 9457 problem document (``also``: other types allowed)."""
    if response.status_code < 400:
        return None
    kind = " ".join(response.headers.get("content-type") or [])
    if kind.startswith("application/problem+json") or any(a in kind for a in also):
        return None
    return f"{operation.label}: {response.status_code} answered as {kind!r}"


# What no error answer may carry: a stack trace, a driver's or the ORM's words, SQL. The
# caller's own text may come back in a 422 (a field name), so these are words a generated
# request does not hold.
LEAK_MARKERS = (
    "Traceback (most recent call last)",
    'File "/',
    "site-packages",
    "sqlalchemy",
    "sqlite3.",
    "psycopg",
    "Background on this error",
    "INSERT INTO ",
    "SELECT ",
    "UPDATE ",
    "BEGIN PRIVATE KEY",
)


def error_leaks_nothing(operation: Any, response: Any, secrets: tuple[str, ...]) -> str | None:
    """An error answer names no server path, stack frame, SQL, or secret (``secrets``: the
    server's state folder, its keys folder, the caller's own token...)."""
    if response.status_code < 400:
        return None
    body = response.text
    for marker in (*LEAK_MARKERS, *(s for s in secrets if s)):
        if marker in body:
            shown = marker if marker in LEAK_MARKERS else "a server path or secret"
            return f"{operation.label}: {response.status_code} answer holds {shown!r}: {body[:200]}"
    return None
