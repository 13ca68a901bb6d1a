"""The published GA4GH TES 1.1.0 schema (`tests/tes/spec/`) as a validator for answers.

Answers are validated against the GA4GH files, not against tre's own pydantic models, so a
drift between the two shows. OpenAPI 3.0 schemas are JSON Schema draft 4 plus a few keywords
(``example``, ``readOnly``) a draft-4 validator ignores. The published schema allows any extra
field; py-tes refuses one, so `strict` closes every TES object schema (maps such as ``tags``
keep their ``additionalProperties``) to catch a field outside TES 1.1.
"""

from __future__ import annotations

import copy
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from jsonschema import Draft4Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

SPEC_DIR = Path(__file__).parent / "spec"
TES_URI = "urn:ga4gh:tes:1.1.0"
SERVICE_INFO_URI = (
    "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/service-info.yaml"
)
# tesServiceInfo and tesServiceType combine two schemas with allOf: closing either branch would
# refuse the other's fields, so their fields are checked by `service_info_fields` instead.
OPEN_ALLOF = {"tesServiceInfo", "tesServiceType"}


def _load(name: str) -> dict[str, Any]:
    with (SPEC_DIR / name).open(encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return doc


@cache
def spec() -> dict[str, Any]:
    return _load("task_execution_service.openapi.yaml")


def _close(schema: Any) -> None:
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _close(value)
    elif isinstance(schema, list):
        for item in schema:
            _close(item)


@cache
def _registry(strict: bool) -> Registry:
    tes = copy.deepcopy(spec())
    if strict:
        for name, schema in tes["components"]["schemas"].items():
            if name not in OPEN_ALLOF:
                _close(schema)
    return Registry().with_resources(
        [
            (TES_URI, DRAFT4.create_resource(tes)),
            (SERVICE_INFO_URI, DRAFT4.create_resource(_load("service-info.yaml"))),
        ]
    )


def _absolute(schema: Any) -> Any:
    """The same schema with its local references pointing into the TES document, so that it
    resolves on its own."""
    if isinstance(schema, dict):
        return {
            k: (f"{TES_URI}{v}" if k == "$ref" and str(v).startswith("#") else _absolute(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_absolute(item) for item in schema]
    return schema


def validator(schema_name: str, strict: bool = True, drop_required: bool = False) -> Draft4Validator:
    """A validator for ``components/schemas/<schema_name>``. ``drop_required``: the schema
    without its top-level ``required`` (the MINIMAL view, below)."""
    if drop_required:
        schema = _absolute(copy.deepcopy(spec()["components"]["schemas"][schema_name]))
        schema.pop("required", None)
        if strict:
            _close(schema)
        return Draft4Validator(schema, registry=_registry(strict))
    return Draft4Validator(
        {"$ref": f"{TES_URI}#/components/schemas/{schema_name}"}, registry=_registry(strict)
    )


def errors(schema_name: str, document: Any, **kw: bool) -> list[str]:
    """Every way ``document`` departs from the schema, as readable lines (empty: it conforms)."""
    found = validator(schema_name, **kw).iter_errors(document)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


def service_info_fields() -> set[str]:
    """The fields GA4GH service-info 1.0.0 and TES 1.1 define for ``/service-info``."""
    service = _load("service-info.yaml")["components"]["schemas"]["Service"]["properties"]
    tes = spec()["components"]["schemas"]["tesServiceInfo"]["allOf"][1]["properties"]
    return set(service) | set(tes)


def rfc3339_problems(task: dict[str, Any]) -> list[str]:
    """Times TES 1.1 says are RFC 3339 that are not (a date-time with 'T' and a zone)."""
    found = []

    def check(where: str, value: Any) -> None:
        if value is None:
            return
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            found.append(f"{where}: {value!r} is not a date-time")
            return
        if "T" not in str(value) or parsed.tzinfo is None:
            found.append(f"{where}: {value!r} lacks the 'T' or a time zone")

    check("creation_time", task.get("creation_time"))
    for i, log in enumerate(task.get("logs") or []):
        for key in ("start_time", "end_time"):
            check(f"logs/{i}/{key}", log.get(key))
        for j, exe in enumerate(log.get("logs") or []):
            for key in ("start_time", "end_time"):
                check(f"logs/{i}/logs/{j}/{key}", exe.get(key))
    return found


def is_uri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme and (parts.netloc or parts.path))
