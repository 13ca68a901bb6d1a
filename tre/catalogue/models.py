"""The node's side of federated search: what a count query may ask and what it gets back.

A query names at most one modality, one body part and one condition, each from a fixed
vocabulary (tre.catalogue.vocabulary); the answer holds, per dataset, the number of unique
individuals and of studies that match, each either rounded or withheld under the dataset's
policy (``catalogue`` section). A withheld figure is ``None`` with ``suppressed`` true; it
is never replaced by a bound such as "<10" (see docs/catalogue.md, "Suppression").
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tre.catalogue.vocabulary import (
    BODY_PART_MAX_LENGTH,
    BODY_PART_PATTERN,
    CONDITION_PATTERN,
    MODALITY_PATTERN,
    normalise_body_part,
    normalise_condition,
    normalise_modality,
)


class CountQuery(BaseModel):
    """How many subjects/studies have modality X, body part Y and condition Z (all optional;
    an empty query counts everything)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    modality: str | None = Field(
        default=None,
        max_length=16,
        description="DICOM modality code (CT, MR, PT, ...).",
        examples=["CT"],
        json_schema_extra={"pattern": MODALITY_PATTERN},
    )
    body_part: str | None = Field(
        default=None,
        max_length=BODY_PART_MAX_LENGTH,
        description="DICOM BodyPartExamined code string, upper-cased (CHEST, ABDOMEN, ...).",
        examples=["CHEST"],
        json_schema_extra={"pattern": BODY_PART_PATTERN},
    )
    condition: str | None = Field(
        default=None,
        max_length=64,
        description="Condition code SYSTEM:CODE (icd10, snomed, orpha), e.g. icd10:C34.",
        examples=["icd10:C34"],
        json_schema_extra={"pattern": CONDITION_PATTERN},
    )

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str | None) -> str | None:
        return None if value is None else normalise_modality(value)

    @field_validator("body_part")
    @classmethod
    def _body_part(cls, value: str | None) -> str | None:
        return None if value is None else normalise_body_part(value)

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        return None if value is None else normalise_condition(value)


class DatasetCount(BaseModel):
    """One dataset's answer: each figure rounded to ``round_to``, or withheld (``None``) when
    the true count is under ``min_count``."""

    model_config = ConfigDict(frozen=True)

    dataset_id: str
    subjects: int | None = Field(description="Unique individuals (PatientID), rounded; None when suppressed.")
    subjects_suppressed: bool
    studies: int | None = Field(description="Studies (StudyInstanceUID), rounded; None when suppressed.")
    studies_suppressed: bool
    min_count: int = Field(description="The dataset policy's threshold: smaller counts are withheld.")
    round_to: int = Field(description="The base shown counts are rounded to (1: not rounded).")
    policy: str = Field(description="Name of the policy the figures were released under.")
    policy_digest: str = Field(description="sha256 of that policy's text.")


class CountAnswer(BaseModel):
    """The node's answer to one count query, tied to the audit log entry by ``query_id``."""

    model_config = ConfigDict(frozen=True)

    query_id: str = Field(description="This node's id for the query (in its audit log entry).")
    query: CountQuery
    answered_at: datetime
    datasets: list[DatasetCount]
