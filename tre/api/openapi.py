"""The OpenAPI document as the server really behaves; clients are generated from it.

FastAPI documents each operation's success and a JSON 422 with an array ``detail``. The
server answers every error with an RFC 9457 problem document (`tre.api.problems`), so this
module rewrites the generated schema once: every operation lists the error statuses the
shared machinery can return, as ``application/problem+json`` with the real problem schema,
and the validation error's body is that same schema (``detail`` a string, ``errors`` the
per-field list). Routes declare their own success media types and headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from tre.api.problems import PROBLEM_MEDIA_TYPE

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

# Why each status can come back from any operation behind the shared machinery.
COMMON_PROBLEMS: dict[int, str] = {
    400: "The request breaks a rule of the service (a bad id, a name not allowed...).",
    401: "No bearer token, or one that is invalid, expired, or names an unknown user.",
    403: "The caller lacks the role or the project membership this needs.",
    404: "No such resource, or one the caller may not see (ids are not an oracle).",
    409: "The resource's state does not allow this now.",
    413: "The request body is larger than the API accepts.",
    422: "The request does not match this schema; ``errors`` lists each field.",
    429: "Too many requests; retry after the delay in ``Retry-After``.",
    503: "A dependency is unavailable (a dataset's policy, a busy database); retry later.",
    507: "The server's storage is full; nothing of the request was kept; retry after ``Retry-After``.",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details: every error the API returns.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A stable URN naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "One sentence a user can act on."},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Validation errors (422 only), one per field.",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}


def iter_api_routes(routes: list[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, looking through included routers (FastAPI may keep them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None) or getattr(route, "router", None)
        if nested is not None and hasattr(nested, "routes") and nested is not route:
            yield from iter_api_routes(list(nested.routes))


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route accepts at this path (Starlette's 405 names only the first
    route it tried, so ``Allow`` said GET on paths that also take POST)."""
    methods: set[str] = set()
    for route in iter_api_routes(list(app.router.routes)):
        match, _ = route.matches({**scope, "method": next(iter(route.methods or {"GET"}))})
        if match == Match.FULL and route.methods:
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}}


def truthful_schema(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    only_declared_success(spec)
    for schema in schemas.values():
        _no_nul_in_text(schema)
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                _absent_rather_than_null(parameter)
                # `tre.api.limits` refuses a NUL anywhere in the path or query (400).
                if parameter.get("in") in ("path", "query"):
                    _no_nul_in_text(parameter.get("schema"))
            responses = operation.setdefault("responses", {})
            for status, description in COMMON_PROBLEMS.items():
                responses[str(status)] = _problem_response(description)
    return spec


NO_NUL_PATTERN = "^[^\\u0000]*$"


def _absent_rather_than_null(parameter: dict[str, Any]) -> None:
    """An optional query or path parameter is left out, never null: a query string has no
    null, so FastAPI's ``anyOf: [..., {type: null}]`` would let a client send the text
    ``null`` expecting "no filter" while the server reads it as a value."""
    schema = parameter.get("schema", {})
    variants = schema.get("anyOf")
    if not isinstance(variants, list):
        return
    kept = [v for v in variants if v != {"type": "null"}]
    if len(kept) == 1 and len(kept) < len(variants):
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if rest.get("default", "") is None:
            rest.pop("default")
        parameter["schema"] = {**kept[0], **rest}


def _no_nul_in_text(schema: Any) -> None:
    """Free text fields say what `tre.api.schemas.In` enforces: no NUL characters (the
    stores cannot hold them). Fields with their own pattern, format or enum already say more."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and not ({"pattern", "format", "enum", "const"} & schema.keys()):
            schema["pattern"] = NO_NUL_PATTERN
        for value in schema.values():
            _no_nul_in_text(value)
    elif isinstance(schema, list):
        for value in schema:
            _no_nul_in_text(value)


def install_openapi(app: FastAPI) -> None:
    """Serve `truthful_schema` (built once, on first request) as the app's OpenAPI."""

    def _openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = truthful_schema(app)
        return app.openapi_schema

    app.openapi = _openapi  # type: ignore[method-assign]


def body_of(
    media_type: str, description: str, headers: dict[str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose success body is not JSON (logs, exports, files), so
    the document names the media type the server really sends, and its headers."""
    schema: dict[str, Any] = (
        {"type": "string"} if media_type.startswith("text/") else {"type": "string", "format": "binary"}
    )
    answer: dict[str, Any] = {"description": description, "content": {media_type: {"schema": schema}}}
    if headers:
        answer["headers"] = {name: {"schema": value} for name, value in headers.items()}
    return {200: answer}


def only_declared_success(spec: dict[str, Any]) -> None:
    """Drop FastAPI's default ``application/json`` where a route declared another body."""
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            ok = operation.get("responses", {}).get("200", {})
            content = ok.get("content", {})
            if len(content) > 1 and "application/json" in content:
                content.pop("application/json")
