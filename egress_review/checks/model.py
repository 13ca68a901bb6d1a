"""The result types every check returns, and how outcomes combine.

Kept apart from the checks so the review queue, the API and the disclosure record can import
them without pulling in pydicom or Pillow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tre.states import CheckOutcome

Outcome = Literal["pass", "flag", "block"]
"""The values of `tre.states.CheckOutcome`, as the type checks declare and store them."""


class CheckResult(BaseModel):
    """One finding of one check on one file, stored with the request and shown to reviewers.

    ``reason`` is written for a DAC member, not a developer; ``evidence`` holds the specifics
    (tags, cells, offsets) as plain JSON, never raw identifier values, so the queue itself does
    not become a copy of the data it protects.
    """

    model_config = ConfigDict(frozen=True)

    check: str
    outcome: Outcome
    reason: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class ModelSandbox(Protocol):
    """What the membership-inference test needs: a model's outputs on records, computed in a
    sandbox because a model file is untrusted (see `egress_review.model_sandbox`)."""

    def predict(self, model: Path, record_sets: dict[str, np.ndarray]) -> dict[str, Predictions]:
        """Per record set, the model's outputs; raises `SandboxUnavailable` when it cannot run."""
        ...


class SandboxUnavailable(RuntimeError):
    """The model could not be run; ``reason`` is fixed text (nothing the model printed)."""


class OnnxRefused(ValueError):
    """The bytes are not a self-contained ONNX model; ``reason`` is fixed text, ``detail`` is
    the parser's message (it may quote job-written names: reviewers only). Here, not beside
    the ONNX reader: the model check catches it without importing onnx (~1.1 s)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Predictions:
    """A model's outputs on one record set: class probabilities (rows x classes) or regression
    values (rows x 1); ``classes`` names the probability columns when the model said so."""

    values: np.ndarray
    kind: Literal["probabilities", "regression"]
    classes: list[str] = field(default_factory=list)


@dataclass
class CheckContext:
    """What the checks know beyond the file: the source data's identifiers and the request size."""

    identifiers: set[str] = field(default_factory=set)
    file_count: int = 1
    total_size: int = 0
    dataset_paths: list[Path] = field(default_factory=list)
    """The datasets the job read: input series for similarity checks of derived volumes."""
    training_records: int | None = None
    """Records the job could train on, when known (model-release capacity rule)."""
    request_files: dict[str, str] = field(default_factory=dict)
    """Every file of the request, name -> SHA-256 (ACRO results.json checksums are verified)."""
    request_paths: dict[str, Path] = field(default_factory=dict)
    """Every file of the request, name -> its frozen copy (to read an ACRO results.json)."""
    depth: int = 0
    """0 for a requested file; 1+ for content decoded from base64/hex inside one."""
    job_outputs: Mapping[str, tuple[Path, str]] = field(default_factory=dict)
    """Every recorded output of the job, name -> (its file, recorded SHA-256): a model card and
    the training/held-out tables it names are read from here, requested or not."""
    datasets: dict[str, Path] = field(default_factory=dict)
    """The job's datasets by id (a model card may name a table of a dataset)."""
    model_sandbox: ModelSandbox | None = None
    """Runs a model on records in a sandbox (membership-inference test); None: not available."""
    released: Mapping[str, list[Any]] = field(default_factory=dict)
    """The counts this project's earlier requests released, by key (`checks.released`): a new
    count a few off one of them is differencing across releases. Never another project's."""
    cohort_size: int | None = None
    """The distinct patients (DICOM PatientIDs) of the datasets the job read, when counted: the
    whole a share no output states a whole for is of ("3.0 % relapsed", leaks18)."""
    aggregates: dict[tuple[str, str, int, int, int], tuple[Any, dict[str, float]]] = field(
        default_factory=dict
    )
    """Each file's counts and shares (`checks.released.aggregates_of`) by its frozen copy (and
    its size and time), name and policy, read once per request: every file with a share is
    compared with the wholes all the request's other files state, and the request keeps them
    all once checked."""


def worst(results: Iterable[CheckResult | str]) -> Outcome:
    """The most severe outcome (block > flag > pass); an empty list passes."""
    best = CheckOutcome.passed
    for r in results:
        outcome = r if isinstance(r, str) else r.outcome
        if outcome not in set(CheckOutcome):
            return "block"  # fail closed on anything unexpected
        if CheckOutcome(outcome).rank > best.rank:
            best = CheckOutcome(outcome)
    return best.value


def action_outcome(action: str) -> Outcome:
    """Map a policy action (allow/flag/block) onto a check outcome."""
    return {"allow": "pass", "flag": "flag", "block": "block"}.get(action, "block")  # type: ignore[return-value]


def mask(value: str) -> str:
    """Show enough of an identifier for a reviewer to recognise the kind, not the person."""
    value = str(value)
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 2) + value[-1]
