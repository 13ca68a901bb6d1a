"""The model card: where a model's training and held-out records are, inside the TRE.

A membership-inference test needs the records the model was trained on and records it was not
trained on. The job that trained the model knows both; it says so in a small JSON sidecar among
its outputs, which does not have to be released itself:

``model-card.json`` (in the model's folder or the output root), or ``<model file>.model-card.json``::

    {
      "tre_model_card": 1,
      "models": [
        {
          "model": "models/classifier.onnx",
          "training_data": "output:tables/train.csv",
          "holdout_data": "output:tables/holdout.csv",
          "label_column": "label",
          "feature_columns": ["age", "lesion_mm", "hu_mean"]
        }
      ]
    }

A single card object (without ``models``) is accepted too. A table reference is
``output:<path>`` (a recorded output of the same job, read with its recorded SHA-256
verified) or ``dataset:<dataset id>/<path>`` (a file of a dataset the job read). Tables are
CSV or TSV with a header row; ``feature_columns`` defaults to every column but the label, in
the order the model's input expects them. Everything in the card is the job's word: paths are
resolved inside the job's outputs or datasets only, and errors are fixed sentences (the path
the job wrote goes to reviewers only).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from egress_review.checks.model import CheckContext

CARD_NAME = "model-card.json"
CARD_SUFFIX = ".model-card.json"
MAX_CARD_BYTES = 256 * 1024
MAX_TABLE_BYTES = 64 * 1024 * 1024
MAX_COLUMNS = 4096


class CardError(ValueError):
    """A fixed sentence for everyone (``reason``) and the job-written specifics (``detail``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class RecordSet:
    """One table of records as the model sees them: features (float) and labels (as written)."""

    features: np.ndarray
    labels: list[str]
    source: str
    columns: list[str] = field(default_factory=list)


@dataclass
class ModelCard:
    model: str
    training_data: str
    holdout_data: str
    label_column: str
    feature_columns: list[str] | None
    card_name: str


def _read_regular(path: Path, limit: int) -> bytes:
    """Read a file without following a symlink in its last component, up to ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise CardError("a file the model card names cannot be opened as a regular file", str(exc)) from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CardError("a file the model card names is not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise CardError(f"a table the model card names is larger than {limit // (1024 * 1024)} MiB")
    return data


def _read_output(name: str, context: CheckContext, limit: int) -> bytes:
    entry = context.job_outputs.get(name)
    if entry is None:
        raise CardError("the model card names a file that is not a recorded output of this job", name)
    path, sha256 = entry
    data = _read_regular(path, limit)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CardError("a job output the model card names changed after the job recorded it", name)
    return data


def find_card(model_name: str, context: CheckContext) -> tuple[str, dict[str, Any]] | None:
    """The card that describes ``model_name`` among the job's outputs (or the request's files)."""
    model = PurePosixPath(model_name)
    candidates = [f"{model_name}{CARD_SUFFIX}", str(model.parent / CARD_NAME), CARD_NAME]
    for name in dict.fromkeys(c.removeprefix("./") for c in candidates):
        if name not in context.job_outputs:
            continue
        try:
            doc = json.loads(_read_output(name, context, MAX_CARD_BYTES))
        except (CardError, ValueError, UnicodeDecodeError):
            return name, {}
        for card in _cards(doc):
            if str(card.get("model", model_name)).removeprefix("./") == model_name:
                return name, card
    return None


def _cards(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    models = doc.get("models")
    if isinstance(models, list):
        return [m for m in models[:100] if isinstance(m, dict)]
    return [doc]


def parse_card(card_name: str, card: dict[str, Any], model_name: str) -> ModelCard:
    """Validate one card entry (fixed reasons; nothing of the job's text in them)."""

    def text(key: str) -> str:
        value = card.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > 1024:
            raise CardError(f"the model card has no usable '{key}' (a non-empty string)")
        return value.strip()

    features = card.get("feature_columns")
    if features is not None and (
        not isinstance(features, list)
        or not features
        or len(features) > MAX_COLUMNS
        or not all(isinstance(c, str) for c in features)
    ):
        raise CardError("the model card's 'feature_columns' is not a list of column names")
    return ModelCard(
        model=model_name,
        training_data=text("training_data"),
        holdout_data=text("holdout_data"),
        label_column=text("label_column"),
        feature_columns=features,
        card_name=card_name,
    )


def _dataset_file(ref: str, context: CheckContext) -> Path:
    dataset_id, _, rel = ref.partition("/")
    root = context.datasets.get(dataset_id)
    if root is None:
        raise CardError("the model card names a dataset this job did not read", dataset_id)
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or ".." in parts or "\0" in rel:
        raise CardError("the model card names a dataset path that is not a plain relative path", rel)
    base = Path(root).resolve()
    candidate = base.joinpath(*parts)
    parent = candidate.parent.resolve()
    if parent != base and base not in parent.parents:
        raise CardError("the model card names a dataset path that leaves the dataset", rel)
    return parent / candidate.name


def table_bytes(ref: str, context: CheckContext) -> tuple[bytes, str]:
    """The bytes of a referenced table and its file name (for the delimiter)."""
    kind, _, rest = ref.partition(":")
    if kind == "output":
        return _read_output(rest.removeprefix("./"), context, MAX_TABLE_BYTES), rest
    if kind == "dataset":
        return _read_regular(_dataset_file(rest, context), MAX_TABLE_BYTES), rest
    raise CardError("a table reference must start with 'output:' or 'dataset:'", ref)


def read_records(ref: str, card: ModelCard, context: CheckContext, max_rows: int) -> RecordSet:
    """Parse a CSV/TSV table into float features and string labels (at most ``max_rows`` rows)."""
    data, name = table_bytes(ref, context)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CardError("a table the model card names is not UTF-8 text", ref) from exc
    delimiter = "\t" if name.lower().endswith((".tsv", ".tab")) else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    if card.label_column not in header:
        raise CardError(
            "a table the model card names has no column of the name the card gives as label_column", ref
        )
    features = card.feature_columns or [h for h in header if h != card.label_column]
    missing = [c for c in features if c not in header]
    if missing or not features:
        raise CardError(
            "a table the model card names lacks feature columns the card lists", ", ".join(missing)
        )
    index = [header.index(c) for c in features]
    label_at = header.index(card.label_column)
    rows: list[list[float]] = []
    labels: list[str] = []
    for line, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CardError(f"line {line} of a table the model card names has the wrong number of cells", ref)
        try:
            rows.append([float(row[i]) for i in index])
        except ValueError as exc:
            raise CardError(
                f"line {line} of a table the model card names has a non-numeric feature", ref
            ) from exc
        labels.append(row[label_at].strip())
        if len(rows) >= max_rows:
            break
    if not rows:
        raise CardError("a table the model card names has no records", ref)
    features_array = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(features_array).all():
        raise CardError("a table the model card names has non-finite feature values", ref)
    return RecordSet(features=features_array, labels=labels, source=ref, columns=features)
