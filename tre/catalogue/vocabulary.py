"""Fixed vocabularies for catalogue queries and descriptions.

A count query is a channel into the node, and a catalogue is a channel out of it: both stay
inside small, documented vocabularies so neither a query nor a description can carry free
text that a job, a header or a researcher controls.
"""

from __future__ import annotations

import re

# DICOM PS3.3 C.7.3.1.1.1 Modality defined terms (current, not retired).
DICOM_MODALITIES: frozenset[str] = frozenset(
    {
        "ANN", "AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CFM", "CR", "CT", "CTPROTOCOL", "DG",
        "DOC", "DX", "ECG", "EEG", "EMG", "EOG", "EPS", "ES", "FID", "GM", "HC", "HD", "IO",
        "IOL", "IVOCT", "IVUS", "KER", "KO", "LEN", "LS", "M3D", "MG", "MR", "NM", "OAM", "OCT",
        "OP", "OPM", "OPT", "OPTBSV", "OPTENF", "OPV", "OSS", "OT", "PA", "PLAN", "POS", "PR",
        "PT", "PX", "REG", "RESP", "RF", "RG", "RTDOSE", "RTIMAGE", "RTINTENT", "RTPLAN",
        "RTRAD", "RTRECORD", "RTSEGANN", "RTSTRUCT", "RWV", "SEG", "SM", "SMR", "SR", "SRF",
        "STAIN", "TEXTUREMAP", "TG", "US", "VA", "XA", "XAPROTOCOL", "XC",
    }
)  # fmt: skip

# BodyPartExamined is a DICOM Code String (CS): upper-case letters, digits, space and
# underscore, at most 16 characters (PS3.5 6.2). PS3.16 Annex L lists the usual values
# (CHEST, ABDOMEN, HEAD, BREAST, ...); sites use others, so the value is checked by shape.
BODY_PART_RE = re.compile(r"^[A-Z0-9_][A-Z0-9_ ]{0,15}$")

# A condition is a code of a classification, written SYSTEM:CODE, e.g. ICD-10 "icd10:C34"
# (malignant neoplasm of bronchus and lung) or "snomed:254637007"; a dataset's conditions
# are set by its admin at registration, never read from the data.
CONDITION_RE = re.compile(r"^(icd10|icdo3|snomed|orpha):[A-Za-z0-9][A-Za-z0-9.\-/]{0,31}$")


def normalise_modality(value: str) -> str:
    """A DICOM modality code, upper-cased; anything else is refused."""
    code = value.strip().upper()
    if code not in DICOM_MODALITIES:
        raise ValueError(f"{value!r} is not a DICOM modality code (PS3.3 C.7.3.1.1.1), e.g. CT, MR, PT")
    return code


def normalise_body_part(value: str) -> str:
    """A BodyPartExamined code string, upper-cased with spaces as in DICOM; shape-checked."""
    code = " ".join(value.strip().upper().split())
    if not BODY_PART_RE.match(code):
        raise ValueError(
            f"{value!r} is not a DICOM body part code (upper-case letters, digits, '_' or space, "
            "at most 16 characters), e.g. CHEST, ABDOMEN"
        )
    return code


def normalise_condition(value: str) -> str:
    """A condition code ``system:code``, the system lower-cased, the code upper-cased."""
    system, _, code = value.strip().partition(":")
    text = f"{system.lower()}:{code.upper()}"
    if not CONDITION_RE.match(text):
        raise ValueError(
            f"{value!r} is not a condition code: write SYSTEM:CODE with SYSTEM one of icd10, "
            "icdo3, snomed, orpha (e.g. icd10:C34)"
        )
    return text
