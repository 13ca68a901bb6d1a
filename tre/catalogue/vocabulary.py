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

# A condition is a code of a classification, written SYSTEM:CODE: ICD-10 ("icd10:C34",
# malignant neoplasm of bronchus and lung), SNOMED CT ("snomed:254637007") or Orphanet
# ("orpha:99976"). A dataset's conditions are set by its admin at registration, never read
# from the data. Each system has a code shape (a regex in any letter case; the code is
# upper-cased once accepted), an IRI per code (used in the JSON-LD catalogue) and the Wikidata
# property that names the system (HealthDCAT-AP's ``hasCodingSystem`` expects one).
CONDITION_SYSTEMS: dict[str, tuple[str, str, str]] = {
    "icd10": (
        "[A-Za-z][0-9]{2}(?:[.][0-9A-Za-z]{1,4})?",
        "http://id.who.int/icd/release/10/",
        "http://www.wikidata.org/entity/P494",
    ),
    "snomed": (
        "[0-9]{6,18}",
        "http://snomed.info/id/",
        "http://www.wikidata.org/entity/P5806",
    ),
    "orpha": (
        "[0-9]{1,7}",
        "http://www.orpha.net/ORDO/Orphanet_",
        "http://www.wikidata.org/entity/P1550",
    ),
}


def _any_case(word: str) -> str:
    """A regex for ``word`` in any letter case, written with character classes only, so it
    means the same in Python and in the ECMA-262 dialect of JSON Schema's ``pattern``."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# What each query field accepts, as one regex the OpenAPI document declares (``pattern``) and
# the validators below check first, on the raw value: so a value the schema allows is never
# refused and one it forbids is never accepted. ASCII only (``str.upper`` maps some other
# letters onto ASCII ones); spaces, not other white space, may surround a value.
MODALITY_PATTERN = (
    "^ *(?:" + "|".join(_any_case(m) for m in sorted(DICOM_MODALITIES, key=lambda m: (-len(m), m))) + ") *$"
)
BODY_PART_PATTERN = "^ *[A-Za-z0-9_][A-Za-z0-9_ ]*$"
BODY_PART_MAX_LENGTH = 16
CONDITION_PATTERN = (
    "^ *(?:"
    + "|".join(f"{_any_case(system)}:{shape}" for system, (shape, _, _) in CONDITION_SYSTEMS.items())
    + ") *$"
)


def _shaped(value: str, pattern: str, message: str) -> str:
    if re.fullmatch(pattern, value) is None:
        raise ValueError(message)
    return value.strip(" ")


def normalise_modality(value: str) -> str:
    """A DICOM modality code, upper-cased; anything else is refused."""
    code = _shaped(
        value,
        MODALITY_PATTERN,
        f"{value!r} is not a DICOM modality code (PS3.3 C.7.3.1.1.1), e.g. CT, MR, PT",
    )
    return code.upper()


def normalise_body_part(value: str) -> str:
    """A BodyPartExamined code string, upper-cased with single spaces as in DICOM."""
    message = (
        f"{value!r} is not a DICOM body part code (upper-case letters, digits, '_' or space, "
        f"at most {BODY_PART_MAX_LENGTH} characters), e.g. CHEST, ABDOMEN"
    )
    if len(value) > BODY_PART_MAX_LENGTH:
        raise ValueError(message)
    return re.sub(" +", " ", _shaped(value, BODY_PART_PATTERN, message).upper())


def normalise_condition(value: str) -> str:
    """A condition code ``system:code``, the system lower-cased, the code upper-cased."""
    text = _shaped(
        value,
        CONDITION_PATTERN,
        f"{value!r} is not a condition code: write SYSTEM:CODE with SYSTEM one of "
        f"{', '.join(CONDITION_SYSTEMS)} (e.g. icd10:C34, snomed:254637007, orpha:99976)",
    )
    system, _, code = text.partition(":")
    return f"{system.lower()}:{code.upper()}"


def condition_iri(code: str) -> str:
    """The IRI of a normalised condition code (WHO ICD-10, SNOMED CT or Orphanet)."""
    system, _, value = code.partition(":")
    return CONDITION_SYSTEMS[system][1] + value


def coding_system_iri(code: str) -> str:
    """The Wikidata property naming the classification a normalised code belongs to."""
    return CONDITION_SYSTEMS[code.partition(":")[0]][2]


# EU Publications Office access-right authority table; a TRE's datasets are NON_PUBLIC (a
# grant approved by the data access committee is needed) unless an admin says otherwise.
ACCESS_RIGHTS: frozenset[str] = frozenset({"PUBLIC", "RESTRICTED", "NON_PUBLIC"})
ACCESS_RIGHT_BASE = "http://publications.europa.eu/resource/authority/access-right/"


def normalise_access_rights(value: str) -> str:
    """One of PUBLIC, RESTRICTED, NON_PUBLIC (upper-cased, '-' read as '_')."""
    code = value.strip().upper().replace("-", "_")
    if code not in ACCESS_RIGHTS:
        raise ValueError(f"access rights {value!r} must be one of {', '.join(sorted(ACCESS_RIGHTS))}")
    return code
