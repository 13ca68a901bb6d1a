"""Unknown query parameters are refused, not ignored.

Ignored, a misspelt filter (``?stat=approved``, ``?projet=p1``) answers as though it had
filtered: a researcher or an auditor then acts on everything believing it is a subset. So
every JSON API route that needs a caller takes only the query names it declares; the answer
names the accepted ones and never echoes what was sent.

The check runs once the caller is known and allowed (from `tre.api.deps`: the role gate, or
`current_principal` on a route without one), so a caller without a token or without the role
still gets its 401 or 403, which the refusal audit records, whatever its query string says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant

from tre.errors import Unprocessable

API_PREFIX = "/api/v1/"
ROLE_GATE_MARK = "_tre_role_gate"
# Kept on the route object itself: routes are not hashable, and an id can be reused by a
# later app's route once an earlier app is gone.
_ATTRIBUTE = "_tre_query_names"


@dataclass(frozen=True)
class RouteQueryNames:
    accepted: frozenset[str]
    gated: bool  # a role gate guards the route, so the gate runs the check


def _walk(dependant: Dependant) -> tuple[set[str], bool]:
    names = {param.alias for param in dependant.query_params}
    gated = bool(getattr(dependant.call, ROLE_GATE_MARK, False))
    for sub in dependant.dependencies:
        sub_names, sub_gated = _walk(sub)
        names |= sub_names
        gated = gated or sub_gated
    return names, gated


def route_query_names(route: Any) -> RouteQueryNames | None:
    """What the matched route declares (its own query names and its dependencies'), worked
    out once per route; None for a route without a dependant."""
    info: RouteQueryNames | None = getattr(route, _ATTRIBUTE, None)
    if info is None:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            return None
        names, gated = _walk(dependant)
        info = RouteQueryNames(frozenset(names), gated)
        setattr(route, _ATTRIBUTE, info)
    return info


def refuse_unknown_query_names(request: Request, *, from_gate: bool) -> None:
    """Raise a 422 when the query names a parameter the route does not take. Called by the
    role gate (``from_gate``) and by `current_principal`, which leaves gated routes to the gate
    so that the gate's 403 comes first."""
    scope = request.scope
    if not scope.get("query_string") or not scope.get("path", "").startswith(API_PREFIX):
        return
    info = route_query_names(scope.get("route"))
    if info is None or (info.gated and not from_gate):
        return
    if set(request.query_params) <= info.accepted:
        return
    hint = ", ".join(sorted(info.accepted)) if info.accepted else "none"
    raise Unprocessable(f"unknown query parameter; this route takes: {hint}", slug="unknown-parameter")
