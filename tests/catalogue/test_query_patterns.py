"""The count query's patterns, as the OpenAPI document declares them, are exactly what the
validators accept: a client generated from the schema is never refused a value the schema
allows, and a value it forbids is never accepted (schemathesis found both kinds once)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tre.catalogue.models import CountQuery
from tre.catalogue.vocabulary import (
    BODY_PART_MAX_LENGTH,
    BODY_PART_PATTERN,
    CONDITION_PATTERN,
    MODALITY_PATTERN,
    normalise_body_part,
    normalise_condition,
    normalise_modality,
)

CASES: list[tuple[str, Callable[[str], str], int]] = [
    (MODALITY_PATTERN, normalise_modality, 16),
    (BODY_PART_PATTERN, normalise_body_part, BODY_PART_MAX_LENGTH),
    (CONDITION_PATTERN, normalise_condition, 64),
]


def _accepted(normalise: Callable[[str], str], value: str) -> bool:
    try:
        normalise(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("pattern", "normalise", "max_length"), CASES, ids=["modality", "body_part", "condition"]
)
def test_values_the_schema_allows_are_accepted(
    pattern: str, normalise: Callable[[str], str], max_length: int
) -> None:
    @settings(max_examples=150, deadline=None)
    @given(st.from_regex(pattern, fullmatch=True).filter(lambda v: len(v) <= max_length))
    def check(value: str) -> None:
        assert _accepted(normalise, value), value

    check()


@pytest.mark.parametrize(
    ("pattern", "normalise", "max_length"), CASES, ids=["modality", "body_part", "condition"]
)
def test_values_the_schema_forbids_are_refused(
    pattern: str, normalise: Callable[[str], str], max_length: int
) -> None:
    alphabet = st.sampled_from("abcdiosACDIOS0123456789_:. \t\nıß\x00")

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet, max_size=20))
    def check(value: str) -> None:
        allowed = re.fullmatch(pattern, value) is not None and len(value) <= max_length
        assert _accepted(normalise, value) == allowed, value

    check()


def test_the_openapi_fields_carry_the_patterns() -> None:
    schema = CountQuery.model_json_schema()["properties"]
    # ``pattern`` next to ``anyOf`` constrains the string branch (it ignores null).
    assert schema["modality"]["pattern"] == MODALITY_PATTERN
    assert schema["body_part"]["pattern"] == BODY_PART_PATTERN
    assert schema["body_part"]["anyOf"][0]["maxLength"] == BODY_PART_MAX_LENGTH
    assert schema["condition"]["pattern"] == CONDITION_PATTERN
    assert CountQuery(modality=" ct", body_part="left  arm", condition="ICD10:c34").model_dump() == {
        "modality": "CT",
        "body_part": "LEFT ARM",
        "condition": "icd10:C34",
    }
