"""The catalogue is valid JSON-LD whose RDF says what DCAT-AP / HealthDCAT-AP readers expect,
with small counts and rare facet values withheld by the dataset's policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rdflib import RDF, XSD, Graph, Literal, Namespace, URIRef
from sqlalchemy import Engine

from tests.catalogue.support import lung_cohort, policy_folder, write_series
from tests.worlds import WorldFactory
from tre.catalogue.dcat import build_catalogue
from tre.config import Settings
from tre.registry import register_dataset
from tre.store.db import session_scope

DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCT = Namespace("http://purl.org/dc/terms/")
HEALTH = Namespace("http://healthdataportal.eu/ns/health#")
TRE = Namespace("https://w3id.org/tre/catalogue#")
DCM = Namespace("http://dicom.nema.org/resources/ontology/DCM/")
ACCESS = Namespace("http://publications.europa.eu/resource/authority/access-right/")


@pytest.fixture
def graph(engine: Engine, settings: Settings, tmp_path: Path) -> Graph:
    settings.policies_dir = policy_folder(tmp_path / "policies")
    settings.catalogue_base_iri = "https://node-a.example.org/tre"
    lung = tmp_path / "data" / "lung"
    lung_cohort(lung)
    small = tmp_path / "data" / "small"
    for n in range(4):
        write_series(small, f"P{n}", f"1.2.826.0.1.3680043.10.{n}", "MR", "BREAST")
    with session_scope(engine) as s:
        WorldFactory(s).users({"root": ["admin"]})
        register_dataset(
            s,
            "root",
            "lung",
            "Lung CT cohort",
            lung,
            "Thoracic CT with PET",
            "default",
            conditions=["icd10:C34"],
        )
        register_dataset(
            s, "root", "small", "Small breast MR", small, policy="default", access_rights="RESTRICTED"
        )
        register_dataset(s, "root", "hidden", "Not listed", lung, policy="unlisted")
    with session_scope(engine) as s:
        doc = build_catalogue(s, settings)
    return Graph().parse(data=json.dumps(doc), format="json-ld")


def _one(graph: Graph, subject: URIRef, predicate: URIRef) -> object:
    values = list(graph.objects(subject, predicate))
    assert len(values) == 1, (predicate, values)
    return values[0]


def test_catalogue_parses_as_dcat(graph: Graph) -> None:
    catalogue = URIRef("https://node-a.example.org/tre")
    assert (catalogue, RDF.type, DCAT.Catalog) in graph
    datasets = set(graph.objects(catalogue, DCAT.dataset))
    base = "https://node-a.example.org/tre/dataset/"
    assert datasets == {URIRef(base + "lung"), URIRef(base + "small")}  # "hidden" is not listed
    for ds in datasets:
        assert (ds, RDF.type, DCAT.Dataset) in graph


def test_dataset_description_and_counts(graph: Graph) -> None:
    lung = URIRef("https://node-a.example.org/tre/dataset/lung")
    assert _one(graph, lung, DCT.title) == Literal("Lung CT cohort")
    assert _one(graph, lung, DCT.description) == Literal("Thoracic CT with PET")
    assert _one(graph, lung, DCT.accessRights) == ACCESS.NON_PUBLIC
    # 12 subjects and 21 studies, rounded to 5 under the default policy
    assert _one(graph, lung, HEALTH.numberOfUniqueIndividuals) == Literal(10, datatype=XSD.nonNegativeInteger)
    assert _one(graph, lung, HEALTH.numberOfRecords) == Literal(20, datatype=XSD.nonNegativeInteger)
    assert _one(graph, lung, HEALTH.hasCodeValues) == URIRef("http://id.who.int/icd/release/10/C34")
    assert _one(graph, lung, HEALTH.hasCodingSystem) == URIRef("http://www.wikidata.org/entity/P494")
    # MR (9 subjects), HEAD (9) and the MR scanner's maker are withheld; PT (10) is shown
    assert set(graph.objects(lung, TRE.imageModality)) == {DCM.CT, DCM.PT}
    assert set(graph.objects(lung, TRE.bodyPart)) == {Literal("CHEST")}
    assert set(graph.objects(lung, TRE.manufacturer)) == {Literal("ACME MEDICAL")}


def test_small_dataset_figures_are_withheld(graph: Graph) -> None:
    small = URIRef("https://node-a.example.org/tre/dataset/small")
    assert _one(graph, small, DCT.accessRights) == ACCESS.RESTRICTED
    assert list(graph.objects(small, HEALTH.numberOfUniqueIndividuals)) == []
    assert list(graph.objects(small, HEALTH.numberOfRecords)) == []
    assert set(graph.objects(small, TRE.suppressed)) == {
        HEALTH.numberOfUniqueIndividuals,
        HEALTH.numberOfRecords,
    }
    assert list(graph.objects(small, TRE.imageModality)) == []  # 4 subjects: not even "there is MR"
    assert list(graph.objects(small, TRE.bodyPart)) == []
