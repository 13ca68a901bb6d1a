"""Egress and job-admission policies: one strict YAML file per data-sharing agreement.

A policy is what the data access committee signed off, so it must mean exactly what it says:
unknown keys are rejected (a typo such as ``treshold`` must not silently fall back to a
default), every field has a documented default, and each loaded policy carries a content
digest so an egress decision can be tied to the exact text it was made under.

``python -m tre.policy schema`` prints the JSON Schema (kept in policies/schema.json);
``python -m tre.policy check [DIR]`` validates every policy in a folder.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from tre.errors import PolicyUnavailable

Action = Literal["allow", "flag", "block"]
"""What a check does when its rule fires: let it through, ask reviewers to look, or refuse."""

ContentType = Literal[
    "png",
    "jpeg",
    "gif",
    "tiff",
    "bmp",
    "webp",
    "nifti",
    "dicom",
    "pdf",
    "xlsx",
    "parquet",
    "arrow",
    "model",
    "csv",
    "tsv",
    "json",
    "text",
    "zip",
    "gzip",
    "bzip2",
    "xz",
    "7z",
    "rar",
    "tar",
    "zstd",
    "executable",
    "binary",
]

CONTENT_TYPES: tuple[str, ...] = get_args(ContentType)
"""Content types the detector can report (by magic bytes and parsing, never by extension)."""

DEFAULT_ALLOWED_TYPES: tuple[ContentType, ...] = (
    "png",
    "jpeg",
    "csv",
    "tsv",
    "json",
    "text",
    "nifti",
    "dicom",
    "xlsx",
    "parquet",
)

POLICY_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")


def _check_regex(label: str, pattern: str) -> None:
    """A policy's regular expression must compile when the policy loads, not when a check
    first meets it: a bad pattern is the policy author's error, named by ``label``."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{label} is not a valid regex: {exc}") from exc


class PolicyError(ValueError):
    """A policy file is missing, unreadable or invalid; names the file, the line (where the
    mistake has one), the field and the reason, in one line an admin can act on."""

    def __init__(self, file: Path | str, field: str, reason: str, line: int | None = None) -> None:
        self.file = str(file)
        self.field = field
        self.reason = reason
        self.line = line
        where = self.file + (f": line {line}" if line is not None else "") + (f": {field}" if field else "")
        super().__init__(f"{where}: {reason}")


class _Strict(BaseModel):
    """Base for every policy section: unknown keys are errors, values are immutable, and a
    number is a number (see `_no_booleans_for_numbers`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML 1.1 reads ``yes``, ``no``, ``on``, ``off``, ``true`` and ``false`` as booleans,
        and pydantic takes a boolean as the number 1 or 0: ``sdc.threshold: yes`` was a
        threshold of 1 (no small-cell suppression at all). A number field refuses them."""
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            kinds = set(get_args(field.annotation)) | {field.annotation} if field is not None else set()
            if kinds & {int, float} and bool not in kinds:
                raise ValueError(
                    f"a number is needed, not {str(value).lower()} (YAML reads yes, no, on, off, "
                    "true and false as booleans)"
                )
        return value


class FileRules(_Strict):
    """Limits on the request as a whole and on each file's container format."""

    allowed_types: list[ContentType] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_TYPES),
        description="Content types (detected from the bytes) that may leave; anything else blocks.",
    )
    max_file_bytes: int = Field(default=50 * 1024 * 1024, gt=0, description="Largest single file.")
    max_files: int = Field(default=50, gt=0, description="Most files in one egress request.")
    max_total_bytes: int = Field(default=200 * 1024 * 1024, gt=0, description="Largest request in total.")
    max_uncompressed_bytes: int = Field(
        default=512 * 1024 * 1024,
        gt=0,
        description="Most bytes a compressed file (e.g. .nii.gz) may inflate to before it is refused.",
    )
    extension_mismatch: Action = Field(
        default="flag", description="File name extension disagrees with the detected content type."
    )
    archives: Action = Field(
        default="block",
        description="The file itself is an archive (zip, gzip, 7z, tar...): reviewers cannot see inside.",
    )
    embedded_containers: Action = Field(
        default="block",
        description="Another format's signature hidden inside the file (polyglot, zip in a PNG chunk).",
    )
    trailing_data: Action = Field(
        default="block",
        description="Bytes after the format's end marker (PNG IEND, JPEG EOI, NIfTI data end).",
    )
    high_entropy: Action = Field(
        default="flag", description="Opaque high-entropy payload (possible encrypted or compressed blob)."
    )
    entropy_threshold_bits: float = Field(
        default=7.5,
        ge=0,
        le=8,
        description="Shannon entropy (bits/byte) above which a payload is 'high entropy'.",
    )
    entropy_min_bytes: int = Field(
        default=1024, ge=1, description="Payloads smaller than this are too short to judge entropy on."
    )


class SdcRules(_Strict):
    """Statistical disclosure control for tables, with ACRO's default parameters.

    ACRO (AI-SDC/ACRO, ``acro/default.yaml``): safe_threshold 10, safe_nk_n 2, safe_nk_k 0.9,
    safe_pratio_p 0.1, zeros_are_disclosive True.
    """

    threshold: int = Field(
        default=10, ge=1, description="Minimum count (frequency) or contributors per cell."
    )
    threshold_action: Action = Field(default="block", description="A cell below the threshold.")
    p_percent: float = Field(
        default=0.10,
        gt=0,
        lt=1,
        description="p-percent rule: contributors other than the two largest must sum to >= p x largest.",
    )
    nk_n: int = Field(default=2, ge=1, description="n of the (n,k) dominance rule.")
    nk_k: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="k of the (n,k) dominance rule: top n must be under k of the total.",
    )
    dominance_action: Action = Field(
        default="block", description="A cell failing p-percent or (n,k) dominance."
    )
    zeros: Action = Field(
        default="flag", description="Zero counts (can disclose that no one in a group has X)."
    )
    negative_magnitudes: Action = Field(
        default="flag", description="Negative contributor values make dominance rules unreliable (ACRO)."
    )
    rounding_base: int | None = Field(
        default=None,
        ge=2,
        description="If set, counts must be multiples of this (e.g. 5); other counts get `unrounded`.",
    )
    unrounded: Action = Field(default="flag", description="A count not a multiple of rounding_base.")
    small_count_limit: int = Field(
        default=20,
        ge=1,
        description="Counts >= threshold but below this are 'small': flagged when not rounded.",
    )
    sparse_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Flag the table when at least this share of count cells are < threshold.",
    )
    max_rows: int = Field(
        default=1000,
        ge=1,
        description="More rows than this looks like record-level data rather than a summary.",
    )
    record_level: Action = Field(default="flag", description="Table larger than max_rows.")
    unclassified_small_integers: Action = Field(
        default="flag",
        description="An integer column not named as counts holds values under the threshold (may be counts).",
    )
    count_columns: list[str] = Field(
        default_factory=lambda: [
            "n",
            "count",
            "counts",
            "freq",
            "frequency",
            "num",
            "number",
            "n_*",
            "*_n",
            "*_count",
            "count_*",
            "num_*",
            "number_of_*",
            "patients",
            "subjects",
            "cases",
            "participants",
            "deaths",
            "events",
            "responders",
            "survivors",
            "*_deaths",
            "*_events",
            "*_cases",
            "*_patients",
            # leaks11: histogram bins, confusion matrices, survival tables, outcomes by name
            "*_counts",
            "counts_*",
            "frequencies",
            "*_frequency",
            "*_frequencies",
            "hist",
            "*_hist",
            "histogram",
            "*confusion*",
            "*at_risk*",
            "relapses",
            "*_relapses",
            "recurrences",
            "relapsed",
            "*_relapsed",
            "died",
            "*_died",
            "deceased",
            "dead",
            "alive",
            "withdrew",
            "withdrawn",
            "recurred",
            "progressed",
            "responded",
            "survived",
            "censored",
            # airlock round 18: a classification report's support is the people of each class
            "support",
        ],
        description="Case-insensitive glob patterns of column names holding counts.",
    )
    magnitude_columns: list[str] = Field(
        default_factory=lambda: [
            "sum",
            "total",
            "sum_*",
            "*_sum",
            "total_*",
            "*_total",
            "mean",
            "*_mean",
            "mean_*",
        ],
        description="Glob patterns of columns holding magnitudes (sums or means over contributors).",
    )
    contributor_columns: list[str] = Field(
        default_factory=lambda: ["contributors", "contributor_values", "values", "*_contributors"],
        description="Globs of columns listing each cell's contributor values (separated by ';' or '|').",
    )
    magnitude_without_contributors: Action = Field(
        default="flag",
        description="A magnitude column without contributor values: "
        "ACRO's p-ratio and nk rules cannot be applied.",
    )
    measurement_columns: list[str] = Field(
        default_factory=lambda: [
            "*_mm",
            "*_cm",
            "*_ml",
            "*_cc",
            "*_hu",
            "*_kg",
            "*_years",
            "*mm",
            "size*",
            "*diameter*",
            "*volume*",
            "*length*",
            "*width*",
            "*height*",
            "*area*",
            "age",
            "age_*",
            "year",
            "*_year",
            "slice*",
        ],
        description="Globs of columns holding measurements (sizes, ages, volumes): never taken as counts.",
    )
    category_columns: list[str] = Field(
        default_factory=lambda: [
            "*stage*",
            "*grade*",
            "*score*",
            "*code*",
            "*class*",
            "*label*",
            "*type*",
            "*group*",
            "*category*",
            "sex",
            "gender",
            "site*",
            "*_id",
            "id",
            "*index*",
            "rank",
            "level",
            "birads",
            "lung_rads",
            "pirads",
        ],
        description="Globs of integer columns that hold category codes (stage 1-4, sex 0/1), not counts.",
    )
    parameter_columns: list[str] = Field(
        default_factory=lambda: [
            "*epoch*",
            "*fold*",
            "*seed*",
            "*worker*",
            "*gpu*",
            "*thread*",
            "*_jobs",
            "*layers",
            "*heads",
            "*channels",
            "*batch*",
            "*steps",
            "*_iter*",
            "*estimators",
            "*trees",
            "*splits",
            "*bins",
            "*components",
            "*features",
            "*classes",
            "*neighbors",
            "*neighbours",
            "*_dim*",
            "*patience*",
            "*warmup*",
            "*depth",
            "*filters",
            "*trials",
            "*repeats",
            "*devices",
            "*params",
            "*parameters",
        ],
        description="Globs of settings and hyper-parameters (num_workers, n_classes, folds): never counts "
        "of people, even when a count glob also matches.",
    )
    percent_columns: list[str] = Field(
        default_factory=lambda: ["percent", "pct", "%", "*_percent", "*_pct", "*_%", "percent_*", "pct_*"],
        description="Globs of columns holding percentages; with a denominator column the count follows.",
    )
    proportion_columns: list[str] = Field(
        default_factory=lambda: ["proportion", "*_proportion", "prop", "*_prop", "fraction", "*_fraction"],
        description="Globs of columns holding proportions (0-1); with a denominator the count follows.",
    )
    denominator_columns: list[str] = Field(
        default_factory=lambda: [
            "denominator",
            "denom",
            "*_denominator",
            "n_total",
            "total_n",
            "total",
            "out_of",
        ],
        description="Globs of columns holding the denominator of a row's percentages.",
    )
    prose_counts: Action = Field(
        default="flag",
        description="A small count written in a sentence ('3 patients had ...', '2.5% of 120 patients').",
    )
    subcount_action: Action = Field(
        default="block",
        description="An unnamed integer column never exceeding the count column in its row (deaths of n) "
        "holds a cell under the threshold.",
    )
    missing: Action = Field(
        default="flag",
        description="Empty or NaN count/magnitude cells (ACRO: check_missing_values); "
        "often a suppressed cell.",
    )
    max_numeric_cells: int = Field(
        default=20000,
        ge=1,
        description="More numeric cells than this is record-level or image-like data, not a summary table.",
    )
    image_table_min_side: int = Field(
        default=32,
        ge=2,
        description="A numeric grid at least this many rows and columns "
        "is treated as an image written as a table.",
    )
    image_table: Action = Field(
        default="block",
        description="A table that is a numeric grid (a picture or a slice written as numbers).",
    )


class RetainOptions(_Strict):
    """The Annex E options a dataset agreement may allow (PS3.15 Table E.1-1 columns)."""

    patient_characteristics: bool = Field(
        default=False,
        description="Retain Patient Characteristics Option: sex, age, size, weight, ethnic group...",
    )
    longitudinal_temporal: bool = Field(
        default=False,
        description="Retain Longitudinal Temporal Information (Full Dates) Option: DA/DT/TM values.",
    )
    safe_private: bool = Field(
        default=False,
        description="Retain Safe Private Option: private tags are flagged for review, not blocked.",
    )
    keywords: list[str] = Field(
        default_factory=list,
        description="Further attribute keywords the agreement allows to keep (e.g. 'SeriesDescription').",
    )


class DicomRules(_Strict):
    """De-identification requirements for any DICOM file in an egress request."""

    profile: Literal["basic"] = Field(
        default="basic", description="PS3.15 Annex E Basic Application Level Confidentiality Profile."
    )
    retain: RetainOptions = Field(default_factory=RetainOptions)
    dummy_values: list[str] = Field(
        default_factory=lambda: ["ANONYMOUS", "ANONYMIZED", "ANONYMISED", "REMOVED", "0"],
        description="Replacement values accepted for Z/D attributes (compared case-insensitively).",
    )
    allowed_values: dict[str, str] = Field(
        default_factory=dict,
        description="Keyword -> regex of accepted replacement values, e.g. PatientID: '^LIDC-IDRI-\\d{4}$'.",
    )
    attribute_present: Action = Field(
        default="block", description="An attribute the profile removes or replaces is present."
    )
    private_tags: Action = Field(
        default="block", description="Private attributes present (ignored if retain.safe_private)."
    )
    burned_in_annotation: Action = Field(default="block", description="BurnedInAnnotation is YES.")
    identity_not_removed: Action = Field(
        default="flag", description="PatientIdentityRemoved missing or not YES."
    )
    unverifiable_uid: Action = Field(
        default="flag",
        description="A UID is present but the source UIDs are unknown, so replacement cannot be verified.",
    )
    pseudonym_patterns: list[str] = Field(
        default_factory=list,
        description="Regexes (full match) of the agreement's pseudonyms, e.g. '^SUBJ-\\d{4}$': accepted as "
        "replacement PatientID/PatientName values and never matched as identifiers.",
    )
    ocr: Action = Field(
        default="block",
        description="Text recognised (OCR) in the pixel data matches a dataset identifier.",
    )

    @field_validator("pseudonym_patterns")
    @classmethod
    def _pseudonyms_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _check_regex(f"pseudonym pattern {pattern!r}", pattern)
        return value

    @field_validator("allowed_values")
    @classmethod
    def _regexes_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for key, pattern in value.items():
            _check_regex(f"allowed_values[{key!r}]", pattern)
        return value


class VolumeRules(_Strict):
    """Derived volumes (NIfTI): a segmentation may leave, the scanned volume may not."""

    max_voxels: int = Field(
        default=4_000_000,
        ge=1,
        description="Most voxels a derived volume may have (a 512x512x16 CT is 4.2M).",
    )
    oversize: Action = Field(default="block", description="Volume over max_voxels.")
    require_label_map: Action = Field(
        default="flag",
        description="The volume is not a mask/label map (non-integer, or more than max_labels values).",
    )
    max_labels: int = Field(default=64, ge=1, description="Most distinct values a label map may hold.")
    similar_to_input: Action = Field(
        default="block", description="A slice correlates with a slice of an input DICOM series."
    )
    similarity_threshold: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Pearson correlation at which a slice counts as a copy of an input.",
    )
    max_input_slices: int = Field(
        default=400,
        ge=0,
        description="Input DICOM slices compared for similarity (0 disables the comparison).",
    )


class ImageRules(_Strict):
    """Raster and volume outputs: size limits and metadata that can carry identifiers."""

    max_width: int = Field(default=8192, ge=1, description="Widest image allowed without review.")
    max_height: int = Field(default=8192, ge=1, description="Tallest image allowed without review.")
    oversize: Action = Field(default="flag", description="Image larger than max_width x max_height.")
    metadata: Action = Field(
        default="flag", description="Text chunks, EXIF, comments or NIfTI text fields present."
    )
    allowed_metadata_keys: list[str] = Field(
        default_factory=lambda: ["Software"],
        description="Text metadata keys considered harmless (e.g. matplotlib's 'Software').",
    )
    undecodable: Action = Field(
        default="block", description="File claims to be an image but cannot be decoded."
    )
    unknown_chunks: Action = Field(
        default="flag", description="Non-standard PNG chunks or JPEG APP segments present."
    )
    ocr: bool = Field(
        default=True,
        description="Recognise text in image pixels (Debian tesseract-ocr) and match it against identifiers.",
    )
    ocr_unavailable: Action = Field(
        default="flag", description="OCR is on but tesseract is not installed or failed."
    )
    ocr_max_pixels: int = Field(
        default=16_000_000, ge=1, description="Images larger than this are not OCRed (flagged instead)."
    )
    volumes: VolumeRules = Field(default_factory=VolumeRules)


class TextRules(_Strict):
    """Free text, logs, JSON and the cells of tables: identifiers from the source data."""

    identifier_action: Action = Field(
        default="block", description="A patient name/ID from the dataset appears."
    )
    min_identifier_length: int = Field(
        default=3, ge=1, description="Shorter identifiers (or name components) are ignored to avoid noise."
    )
    min_numeric_identifier_length: int = Field(
        default=5,
        ge=1,
        description="Purely numeric identifiers shorter than this are ignored (they collide with counts).",
    )
    ignore_identifiers: list[str] = Field(
        default_factory=lambda: [
            "anonymous",
            "anonymized",
            "anonymised",
            "unknown",
            "patient",
            "phantom",
            "test",
        ],
        description="Globs of values never treated as identifiers (case-insensitive), e.g. 'lidc-idri-*'.",
    )
    patterns: dict[str, str] = Field(
        default_factory=lambda: {
            # Any DICOM UID by its syntax (PS3.5 9.1: a root arc 0-2, numeric components
            # without leading zeros), not by a list of roots: Siemens (1.3.12), Philips
            # (1.3.46), HL7 (2.16.840) and UUID-derived 2.25.<128-bit> UIDs passed silently
            # in a cohort's manifest.json and sidecars. Five or more components (an IPv4
            # address or a version number has fewer); 2.25.<integer> has three.
            "dicom_uid": r"\b(?:[012](?:\.(?:0|[1-9]\d*)){4,}|2\.25\.[1-9]\d{9,})\b",
            # starts at the literal '@' (with a look-behind for the local part): linear and fast
            "email": r"(?<=[\w.+-])@[\w-]+\.[A-Za-z]{2,}\b",
        },
        description="Name -> regex of further identifier-like strings to flag in text.",
    )
    pattern_action: Action = Field(default="flag", description="A `patterns` regex matched.")
    encoded_blob: Action = Field(
        default="flag", description="A long base64/hex run in text (a way to smuggle binary data out)."
    )
    encoded_blob_min_chars: int = Field(
        default=512, ge=16, description="Shortest run counted as an encoded blob."
    )
    decode_depth: int = Field(
        default=2, ge=0, le=4, description="How deep decoded base64/hex content is checked again (nested)."
    )
    date_identifiers: bool = Field(
        default=True,
        description="Birth and study dates are identifiers, "
        "matched in any common form (1962-03-15, 15/03/1962).",
    )
    identifier_columns: list[str] = Field(
        default_factory=lambda: [
            "mrn",
            "*_mrn",
            "mrn_*",
            "patient_id",
            "patientid",
            "hospital_number",
            "nhs_number",
            "patient_name",
            "name",
            "surname",
            "first_name",
            "last_name",
            "dob",
            "birth_date",
            "date_of_birth",
            "accession*",
        ],
        description="Globs of columns of the dataset's own tables (CSV/TSV, XLSX, Parquet sidecars) "
        "whose values are identifiers.",
    )

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for key, pattern in value.items():
            _check_regex(f"patterns[{key!r}]", pattern)
        return value


class ModelRules(_Strict):
    """Trained models: released only through a model-release review (SACRO-ML in spirit)."""

    action: Action = Field(
        default="flag",
        description="A model artefact: route to model-release review (reviewers see a report).",
    )
    unsafe_pickle: Action = Field(
        default="block", description="A pickle (or torch file) that imports callables outside the allowlist."
    )
    allowed_pickle_globals: list[str] = Field(
        default_factory=lambda: [
            "collections.OrderedDict",
            "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_parameter",
            "torch.*Storage",
            "torch.float*",
            "torch.int*",
            "torch.uint8",
            "torch.bool",
            "torch.bfloat16",
            "numpy.core.multiarray._reconstruct",
            "numpy._core.multiarray._reconstruct",
            "numpy.ndarray",
            "numpy.dtype",
        ],
        description="module.name globs a pickle may import (torch/numpy tensor rebuilding only).",
    )
    min_samples_leaf: int = Field(
        default=5,
        ge=1,
        description="SACRO-ML structural rule: trees need at least this many samples per leaf.",
    )
    max_parameters_per_record: float = Field(
        default=1.0,
        gt=0,
        description="More parameters than this per training record (when known) can memorise the data.",
    )
    structural: Action = Field(default="flag", description="A structural rule (leaf size, parameters) fails.")
    min_weights: int = Field(
        default=256,
        ge=1,
        description="JSON holding at least this many numbers in arrays is treated as weights.",
    )
    metadata: Action = Field(
        default="flag",
        description="An ONNX model carries metadata_props (job-written text, shown to reviewers only).",
    )
    mi_max_auc: float = Field(
        default=0.6,
        ge=0.5,
        le=1.0,
        description="Membership inference (SACRO-ML worst case): an attack AUC above this fails.",
    )
    mi_action: Action = Field(default="flag", description="The membership-inference attack beats mi_max_auc.")
    mi_unavailable: Action = Field(
        default="flag",
        description="The membership-inference test could not run (no model card, unreadable tables, "
        "no sandbox, the model would not run).",
    )
    mi_min_records: int = Field(
        default=20, ge=10, description="Fewer training or held-out records than this: the test is not run."
    )
    mi_max_records: int = Field(
        default=5000, ge=10, le=200_000, description="Records per set the attack uses (a seeded sample)."
    )
    custom_operators: Action = Field(
        default="flag",
        description="ONNX operators outside the standard domains (ai.onnx, ai.onnx.ml): what they "
        "compute is not defined by the standard.",
    )


class JobRules(_Strict):
    """Which container images may run next to the data (used by job admission too)."""

    allowed_images: list[str] = Field(
        default_factory=list,
        description="Globs of image references, e.g. 'registry.tre.local/*@sha256:*'. Empty allows none.",
    )
    require_digest: bool = Field(
        default=True, description="Only digest-pinned references (name@sha256:<64 hex>)."
    )
    log_visibility: Literal["screened", "status_only", "full"] = Field(
        default="screened",
        description="What researchers see of a job's log: screened lines, nothing, or everything.",
    )
    researcher_log_limit_kib: int = Field(
        default=256,
        ge=0,
        le=1 << 20,
        description="Per-job budget: researchers see (screened) at most the first KiB of a job's log.",
    )
    researcher_log_project_daily_kib: int = Field(
        default=2048,
        ge=0,
        le=1 << 24,
        description="Per-project budget: screened log bytes shown to a project's researchers per UTC day, "
        "over all its jobs (KiB); enforced by the API, counted once per line shown.",
    )
    max_output_files: int = Field(
        default=200,
        ge=1,
        le=100_000,
        description="A job's output files beyond this many are not recorded (names and sizes are a channel).",
    )
    max_output_name_chars: int = Field(
        default=200,
        ge=16,
        le=1024,
        description="Output files whose relative path is longer are not recorded.",
    )
    log_max_line_chars: int = Field(
        default=400, ge=40, description="Longer log lines are withheld from researchers."
    )
    log_encoded_min_chars: int = Field(
        default=96, ge=16, description="Log lines holding a base64/hex run this long are withheld."
    )

    def image_allowed(self, image: str) -> bool:
        """Whether ``image`` may run: digest-pinned if required, and matching an allowlist glob.

        Deny by default: an empty allowlist admits nothing, and a tag can be re-pushed, so only a
        digest says which bytes the committee approved.
        """
        image = image.strip()
        if not image or any(c.isspace() for c in image):
            return False
        if self.require_digest and not re.search(r"@sha256:[0-9a-f]{64}$", image):
            return False
        return any(fnmatch.fnmatchcase(image, pattern) for pattern in self.allowed_images)


class CatalogueRules(_Strict):
    """What the dataset shows in the node's catalogue and in answers to federated count
    queries (docs/catalogue.md): counts under ``min_count`` are withheld, the rest rounded."""

    listed: bool = Field(
        default=True,
        description="Describe the dataset in the catalogue and answer count queries about it.",
    )
    min_count: int | None = Field(
        default=None,
        ge=1,
        description="Counts (subjects, studies) under this are withheld; unset: sdc.threshold.",
    )
    round_to: int | None = Field(
        default=None,
        ge=1,
        description="Shown counts are rounded to the nearest multiple of this; unset: sdc.rounding_base, "
        "else 5. min_count must be a multiple of it.",
    )


class Policy(_Strict):
    """A complete egress + job policy. ``name`` is the file stem; ``digest`` its content hash."""

    name: str = Field(description="Must equal the file name without .yaml.")
    version: str = Field(min_length=1, description="Human-managed version string, bumped on every change.")
    description: str = Field(default="", description="What agreement this policy implements.")
    required_reviews: Annotated[int, Field(ge=1, le=10)] = Field(
        default=2, description="Independent DAC approvals needed before release (two-person rule)."
    )
    files: FileRules = Field(default_factory=FileRules)
    sdc: SdcRules = Field(default_factory=SdcRules)
    dicom: DicomRules = Field(default_factory=DicomRules)
    image: ImageRules = Field(default_factory=ImageRules)
    text: TextRules = Field(default_factory=TextRules)
    models: ModelRules = Field(default_factory=ModelRules)
    job: JobRules = Field(default_factory=JobRules)
    catalogue: CatalogueRules = Field(default_factory=CatalogueRules)
    digest: str = Field(default="", description="sha256 of the file bytes; set by the loader, not in YAML.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not POLICY_NAME_RE.match(value):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-'")
        return value

    def catalogue_limits(self) -> tuple[int, int]:
        """(min_count, round_to) for catalogue figures: the ``catalogue`` section's values,
        else the table rules' threshold and rounding base, else a base of 5.

        A threshold between two multiples of the base is raised to the next multiple: else a
        rounded figure could bound a count from both sides (threshold 12, base 5: a shown 10
        could only be a true 12)."""
        round_to = self.catalogue.round_to or self.sdc.rounding_base or 5
        min_count = self.catalogue.min_count or self.sdc.threshold
        return -(-min_count // round_to) * round_to, round_to


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _repeated_key(text: str) -> tuple[str, int] | None:
    """The first key a mapping of the file names twice (its dotted path and line), if any.

    PyYAML keeps the last of two equal keys without a word, so a policy read as ``3`` reviews
    by a person (the first ``required_reviews``) was ``1`` for the airlock (the second), and a
    section repeated further down replaced the first one whole. Walked on the composed nodes
    (aliases visited once: a shared node is not walked again)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node | None, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                where = f"{path}.{key}" if path else key
                if key in keys:
                    return where, key_node.start_mark.line + 1
                keys.add(key)
                stack.append((value_node, where))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
    return None


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line (1-based) of the YAML key or item a validation error's location points to, or
    of the deepest part of it that exists (a missing key: its section); None at the top."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next((kv for kv in node.value if kv[0].value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _section_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section holding ``loc``'s last key takes (``sdc.treshold``: sdc's)."""
    model: Any = Policy
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        model = inner
    return [name for name in model.model_fields if name != "digest"]


def _reason(kind: str, message: str, loc: tuple[int | str, ...], value: object, text: str) -> str:
    """A validation error in the admin's words: an unknown key names the closest known one
    (``sdc.treshold_action``: did you mean 'threshold_action'?), and a number where text is
    needed says to quote it (``version: 1.0`` read as a float: 'Input should be a valid
    string' left the admin guessing; newcomer round 23)."""
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _section_keys(loc), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key ({hint}see policies/SCHEMA.md)"
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        written = _written(text, loc) or str(value)  # 1.10 as written, not the float 1.1
        return f'needs text, and YAML reads {written} as a number: put it in quotes ("{written}")'
    return message


def _written(text: str, loc: tuple[int | str, ...]) -> str | None:
    """The value at ``loc`` as the file spells it (a plain scalar's source text), or None."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return None
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def parse_policy(text: str, source: Path | str, expected_name: str | None = None) -> Policy:
    """Validate YAML text into a Policy; every failure is a PolicyError naming the field and,
    where the file has one, its line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        column = f" (column {mark.column + 1})" if mark is not None else ""
        raise PolicyError(
            source, "", f"invalid YAML: {problem}{column}", line=mark.line + 1 if mark is not None else None
        ) from exc
    if not isinstance(data, dict):
        raise PolicyError(source, "", "a policy must be a YAML mapping at the top level")
    repeated = _repeated_key(text)
    if repeated is not None:
        raise PolicyError(
            source, repeated[0], "is given more than once (YAML would keep the last)", line=repeated[1]
        )
    if "digest" in data:
        raise PolicyError(
            source,
            "digest",
            "is computed from the file and must not be set in YAML",
            line=_line_of(text, ("digest",)),
        )
    if expected_name is not None:
        data.setdefault("name", expected_name)
        if data["name"] != expected_name:
            raise PolicyError(
                source,
                "name",
                f"is {data['name']!r} but the file is named {expected_name!r}.yaml",
                line=_line_of(text, ("name",)),
            )
    data["digest"] = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
        loc = tuple(first["loc"])
        reason = _reason(first["type"], first["msg"], loc, first.get("input"), text)
        raise PolicyError(source, _field_path(loc), reason + more, line=_line_of(text, loc)) from exc


def load_policy(name: str, policies_dir: Path) -> Policy:
    """Load ``policies_dir/<name>.yaml``; the name is checked so it cannot escape the folder."""
    if not POLICY_NAME_RE.match(name):
        raise PolicyError(f"{name}.yaml", "name", "not a valid policy name")
    path = Path(policies_dir) / f"{name}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PolicyError(path, "", f"no such policy; {_policies_in(Path(policies_dir))}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(path, "", f"cannot read: {exc}") from exc
    return _parse_cached(text, str(path), name)


def _policies_in(folder: Path) -> str:
    """What a misspelt ``--policy`` could have meant: the names the folder holds (it said
    only "no such policy", and the admin had to go and list the folder; newcomer round 23)."""
    try:
        names = sorted(p.stem for p in folder.glob("*.yaml") if POLICY_NAME_RE.match(p.stem))
    except OSError:
        names = []
    if not names:
        return f"the policies folder {folder} holds none (TRE_POLICIES_DIR)"
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return f"the policies in {folder}: {shown}"


@functools.lru_cache(maxsize=64)
def _parse_cached(text: str, source: str, name: str) -> Policy:
    """Policies are immutable models and the file is re-read on every load, so a parse can be
    reused for the same text: YAML parsing was a tenth of a job submission's CPU under load
    (benchmarks/bench_api.py). An edited file has new text, hence a fresh parse; failures
    raise and are never cached."""
    return parse_policy(text, source, expected_name=name)


class HasPolicy(Protocol):
    """Anything that names its policy: a dataset row, or a federated dataset description."""

    policy: str


@dataclass(frozen=True)
class AppliedPolicy:
    """A loaded policy under the name it was asked for (results are tagged with both)."""

    name: str
    policy: Policy

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": str(getattr(self.policy, "version", "")),
            "digest": str(getattr(self.policy, "digest", "")),
            "required_reviews": int(getattr(self.policy, "required_reviews", 2)),
        }


def policies_for_datasets(datasets: Iterable[HasPolicy], policies_dir: Path) -> list[AppliedPolicy]:
    """Every distinct policy of the datasets (``default`` for a job that reads none).

    The one place both admission and the airlock resolve a job's rules: any policy that
    cannot be loaded stops the caller with `PolicyUnavailable` (fail closed).
    """
    names = sorted({d.policy or "default" for d in datasets}) or ["default"]
    applied = []
    for name in names:
        try:
            applied.append(AppliedPolicy(name, load_policy(name, policies_dir)))
        except Exception as exc:  # noqa: BLE001 - any failure to load rules must stop the caller
            raise PolicyUnavailable(f"policy {name!r} of the job's datasets cannot be loaded: {exc}") from exc
    return applied


def load_all(policies_dir: Path) -> dict[str, Policy]:
    """Every ``*.yaml`` policy in the folder by name; the first invalid one raises."""
    return {p.stem: load_policy(p.stem, policies_dir) for p in sorted(Path(policies_dir).glob("*.yaml"))}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (without the loader-computed ``digest``)."""
    schema = Policy.model_json_schema()
    schema["properties"].pop("digest", None)
    schema["title"] = "TRE egress and job policy"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text() -> str:
    """The exact text of policies/schema.json, so a test can compare it byte for byte."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``schema`` prints the JSON Schema; ``check [DIR]`` validates a folder of policies."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["schema"]:
        sys.stdout.write(schema_text())
        return 0
    if args[:1] == ["check"]:
        folder = Path(args[1]) if len(args) > 1 else Path("policies")
        try:
            policies = load_all(folder)
        except PolicyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for pol in policies.values():
            print(f"{pol.name} {pol.version} {pol.digest}")
        return 0
    print("usage: python -m tre.policy schema | check [DIR]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
