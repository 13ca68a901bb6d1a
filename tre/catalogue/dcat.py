"""The node's catalogue as DCAT-AP / HealthDCAT-AP shaped JSON-LD.

One ``dcat:Catalog`` whose ``dcat:dataset`` entries describe each listed dataset: title,
description and access rights from its registration; the numbers of unique individuals and
of studies, and the image modalities, body parts and manufacturers, from its DICOM headers
(tre.catalogue.extract), all released under the dataset's policy (tre.catalogue.disclosure).
Terms come from DCAT, DCTERMS and HealthDCAT-AP where those define them; the imaging facets,
which they do not, are in tre's own namespace (docs/catalogue.md lists every term).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from tre.catalogue.counts import ListedDataset, listed_datasets, true_counts
from tre.catalogue.disclosure import release_subjects_and_studies
from tre.catalogue.extract import DatasetFacts, SeriesFacts
from tre.catalogue.vocabulary import ACCESS_RIGHT_BASE, coding_system_iri, condition_iri
from tre.config import Settings

JSONLD_MEDIA_TYPE = "application/ld+json"
TRE_NS = "https://w3id.org/tre/catalogue#"
DICOM_DCM_NS = "http://dicom.nema.org/resources/ontology/DCM/"

CONTEXT: dict[str, Any] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "healthdcatap": "http://healthdataportal.eu/ns/health#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcm": DICOM_DCM_NS,
    "tre": TRE_NS,
}


def _count_literal(value: int) -> dict[str, str]:
    return {"@value": str(value), "@type": "xsd:nonNegativeInteger"}


def _released_values(
    facts: DatasetFacts, key: Callable[[SeriesFacts], str | None], min_count: int
) -> list[str]:
    """The values of one facet held by at least ``min_count`` subjects, sorted: a value only
    a few subjects have would itself disclose a small group."""
    subjects: dict[str, set[int]] = defaultdict(set)
    for series in facts.series:
        value = key(series)
        if value is not None:
            subjects[value].add(series.subject)
    return sorted(v for v, who in subjects.items() if len(who) >= min_count)


def dataset_entry(settings: Settings, listed: ListedDataset) -> dict[str, Any]:
    """One ``dcat:Dataset``: suppressed figures are left out and named in ``tre:suppressed``."""
    ds, facts = listed.dataset, listed.facts
    min_count, round_to = listed.policy.policy.catalogue_limits()
    subjects, studies = true_counts(facts, None, None)
    entry: dict[str, Any] = {
        "@id": f"{settings.catalogue_base_iri}/dataset/{ds.id}",
        "@type": "dcat:Dataset",
        "dct:identifier": ds.id,
        "dct:title": ds.name or ds.id,
        "dct:description": ds.description or "",
        "dct:accessRights": {"@id": ACCESS_RIGHT_BASE + (ds.access_rights or "NON_PUBLIC")},
        "tre:minCount": _count_literal(min_count),
        "tre:roundTo": _count_literal(round_to),
    }
    suppressed = []
    for term, shown in zip(
        ("healthdcatap:numberOfUniqueIndividuals", "healthdcatap:numberOfRecords"),
        release_subjects_and_studies(subjects, studies, min_count, round_to),
        strict=True,
    ):
        if shown is None:
            suppressed.append({"@id": term})
        else:
            entry[term] = _count_literal(shown)
    if suppressed:
        entry["tre:suppressed"] = suppressed
    conditions = sorted(ds.conditions or [])
    if conditions:
        entry["healthdcatap:hasCodeValues"] = [{"@id": condition_iri(c)} for c in conditions]
        entry["healthdcatap:hasCodingSystem"] = [
            {"@id": iri} for iri in sorted({coding_system_iri(c) for c in conditions})
        ]
        entry["tre:condition"] = conditions
    modalities = _released_values(facts, lambda s: s.modality, min_count)
    body_parts = _released_values(facts, lambda s: s.body_part, min_count)
    manufacturers = _released_values(facts, lambda s: s.manufacturer, min_count)
    entry["tre:imageModality"] = [{"@id": "dcm:" + m} for m in modalities]
    entry["tre:bodyPart"] = body_parts
    entry["tre:manufacturer"] = manufacturers
    keywords = modalities + body_parts
    if keywords:
        entry["dcat:keyword"] = keywords
    return entry


def build_catalogue(session: Session, settings: Settings) -> dict[str, Any]:
    """The whole catalogue as a JSON-LD document (a ``dcat:Catalog``)."""
    datasets = [dataset_entry(settings, listed) for listed in listed_datasets(session, settings)]
    return {
        "@context": CONTEXT,
        "@id": settings.catalogue_base_iri,
        "@type": "dcat:Catalog",
        "dct:title": settings.catalogue_title,
        "dct:description": "Imaging datasets held by this trusted research environment; figures "
        "under each dataset's disclosure threshold are withheld and the rest rounded.",
        "dcat:dataset": datasets,
    }
