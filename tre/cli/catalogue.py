"""`tre catalogue`: the node's dataset catalogue and count queries, over the API.

``show`` prints the datasets with their released figures (``--json``: the JSON-LD itself),
``export`` writes the JSON-LD to a file, ``count`` asks how many subjects and studies have a
modality, body part and condition. Withheld figures print as ``suppressed``, never as a
bound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from tre.catalogue.models import CountQuery
from tre.cli.client import ApiClient, CliError
from tre.cli.output import console, table

app = typer.Typer(help="The node's dataset catalogue (DCAT-AP JSON-LD) and federated count queries.")

SUPPRESSED = "suppressed"


def _figure(entry: dict[str, Any], term: str) -> str:
    value = entry.get(term)
    return str(value["@value"]) if isinstance(value, dict) and "@value" in value else SUPPRESSED


def _values(entry: dict[str, Any], term: str) -> str:
    items = entry.get(term) or []
    return ",".join(str(i["@id"]).removeprefix("dcm:") if isinstance(i, dict) else str(i) for i in items)


@app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON-LD document.")] = False,
) -> None:
    """The datasets this node describes, with figures released under each one's policy."""
    doc = ApiClient().get("/api/v1/catalogue")
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return
    table(
        "catalogue",
        ["id", "title", "access", "subjects", "studies", "modalities", "body parts", "conditions"],
        [
            (
                d.get("dct:identifier"),
                d.get("dct:title"),
                str(d.get("dct:accessRights", {}).get("@id", "")).rsplit("/", 1)[-1],
                _figure(d, "healthdcatap:numberOfUniqueIndividuals"),
                _figure(d, "healthdcatap:numberOfRecords"),
                _values(d, "tre:imageModality"),
                _values(d, "tre:bodyPart"),
                _values(d, "tre:condition"),
            )
            for d in doc.get("dcat:dataset", [])
        ],
    )


@app.command("export")
def export(
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write the JSON-LD to.")],
) -> None:
    """Write the catalogue as JSON-LD (application/ld+json) to a file (its folder is created,
    as `tre audit export`, `tre job code -o` and `tre egress disclosure -o` create theirs)."""
    doc = ApiClient().get("/api/v1/catalogue")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from exc
    console.print(f"wrote the catalogue ({len(doc.get('dcat:dataset', []))} datasets) to {output}")


@app.command("count")
def count(
    modality: Annotated[str | None, typer.Option(help="DICOM modality code, e.g. CT, MR, PT.")] = None,
    body_part: Annotated[str | None, typer.Option(help="DICOM body part, e.g. CHEST.")] = None,
    condition: Annotated[str | None, typer.Option(help="Condition code, e.g. icd10:C34.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """How many subjects and studies per dataset match; small counts are withheld."""
    try:
        query = CountQuery(modality=modality, body_part=body_part, condition=condition)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "--" + str(first["loc"][0]).replace("_", "-")
        raise typer.BadParameter(str(first["msg"]).removeprefix("Value error, "), param_hint=field) from exc
    answer = ApiClient().post("/api/v1/catalogue/counts", json=query.model_dump(exclude_none=True))
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    table(
        f"counts (query {answer['query_id']})",
        ["dataset", "subjects", "studies", "min count", "rounded to"],
        [
            (
                d["dataset_id"],
                SUPPRESSED if d["subjects_suppressed"] else d["subjects"],
                SUPPRESSED if d["studies_suppressed"] else d["studies"],
                d["min_count"],
                d["round_to"],
            )
            for d in answer["datasets"]
        ],
    )
