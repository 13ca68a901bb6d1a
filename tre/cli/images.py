"""`tre image ...`: import a researcher's image through the API (the control plane does the
work, so it works from a laptop), list what may run, approve/revoke (admins), push."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from tre.cli.client import ApiClient, CliError
from tre.cli.output import JsonFlag, UsageMistake, console, human_size, print_json, table, untrusted, utc_time
from tre.cli.resolve import resolve_image_ref
from tre.images.reference import DEFAULT_IMAGE_NAME
from tre.plural import count

app = typer.Typer(help="Container images: import, list, approve for a project, push to the registry.")
UPLOAD_TIMEOUT_S = 3600.0
_PINNED = re.compile(r"^\S[^\n]*@sha256:[0-9a-f]{64}$")


def _image_ref(client: ApiClient, given: str) -> str:
    """The pinned reference an admin command acts on, from a whole one or a digest prefix.

    Why here: what is neither reached the server, which answered with its request schema's
    pattern, not with what to type."""
    ref = resolve_image_ref(client, given)
    if not _PINNED.match(ref):
        raise CliError(
            f"{given!r} names no image you can see: give NAME@sha256:HEX, or a unique prefix of "
            "its digest (sha256:HEX or HEX), as `tre image list` shows them"
        )
    return ref


@app.command("import")
def import_image(
    path: Annotated[Path, typer.Argument(help="docker save archive, OCI archive, or OCI layout folder.")],
    name: Annotated[str | None, typer.Option(help="Repository name (default: the archive's).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload an image; prints the reference to submit jobs with once an admin approves it."""
    if not path.exists():
        raise CliError(f"no such file or folder: {path}")
    client = ApiClient(timeout=UPLOAD_TIMEOUT_S)
    params = {"name": name} if name else {}
    with tempfile.TemporaryDirectory() as tmp:
        upload = path
        if path.is_dir():
            from tre.images.archive import tar_layout_dir

            upload = Path(tmp) / "layout.tar"
            tar_layout_dir(path, upload)
        with upload.open("rb") as fh:
            image = client.post(
                "/api/v1/images",
                params=params,
                content=fh,
                headers={"Content-Type": "application/octet-stream"},
            )
    if as_json:
        print_json(image)
        return
    console.print(
        f"imported {untrusted(image['reference'])} ({count(image['layers'], 'layer')}, "
        f"{human_size(image['size'])}, unpacked {human_size(image['unpacked_size'])})",
        soft_wrap=True,
    )
    if not name and image.get("name") == DEFAULT_IMAGE_NAME:
        # An OCI archive often names no repository (umoci, skopeo oci-archive without a name):
        # newcomer round 22 read registry.tre.local/image@... as a name of its own choosing.
        console.print(
            f"the archive names no repository, so the image is called '{DEFAULT_IMAGE_NAME}'; "
            "--name NAME gives a new image a name of its own"
        )
    if not image["approved_for"]:
        console.print("it runs in a project once an admin approves it: tre image approve REF --project P")


@app.command("list")
def list_images(
    usable: Annotated[bool, typer.Option("--usable", help="Only images the project may run.")] = False,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project (with --usable).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Images you may see: digest, name, size, layers, created, importer, approvals."""
    if usable and not project:
        raise UsageMistake("--usable needs --project/-p")
    params = {"usable_for": project} if usable and project else {}
    rows: list[dict[str, Any]] = ApiClient().get("/api/v1/images", params=params)
    if as_json:
        print_json(rows)
        return
    if usable:
        for r in rows:
            console.print(untrusted(r["reference"]), soft_wrap=True, highlight=False)
        if not rows:
            console.print(f"no image is approved for project {untrusted(project)} yet")
        return
    table(
        "images",
        ["digest", "name", "size", "layers", "created", "imported by", "approved for"],
        [
            (
                r["digest"],
                r["name"],
                human_size(r["size"]) if r["imported"] else "external",
                r["layers"] or "-",
                utc_time(r["created"]),
                r["imported_by"] or "-",
                ", ".join(r["approved_for"]) or "-",
            )
            for r in rows
        ],
    )


@app.command("approve")
def approve(
    reference: Annotated[str, typer.Argument(help="name@sha256:... (or sha256:... of an imported image)")],
    project: Annotated[str, typer.Option("--project", "-p")],
    external: Annotated[
        bool, typer.Option(help="Approve a registry-hosted image that was never imported (clusters only).")
    ] = False,
) -> None:
    """Allow a project to run an image (admin; audited). REFERENCE may end in a unique
    prefix of an imported image's digest (sha256:PREFIX or name@sha256:PREFIX)."""
    client = ApiClient()
    ref = reference if external else _image_ref(client, reference)
    body = {"reference": ref, "project_id": project, "external": external}
    row = client.post("/api/v1/images/approvals", json=body)
    console.print(
        f"approved {untrusted(row['reference'])} for project {untrusted(row['project_id'])}", soft_wrap=True
    )
    if row.get("pushed_to"):
        console.print(f"pushed to {untrusted(row['pushed_to'])}", soft_wrap=True)


@app.command("revoke")
def revoke(
    reference: Annotated[str, typer.Argument(help="name@sha256:...")],
    project: Annotated[str, typer.Option("--project", "-p")],
) -> None:
    """Withdraw a project's approval of an image (admin; audited). Queued jobs keep theirs.
    REFERENCE may end in a unique prefix of the digest."""
    client = ApiClient()
    row = client.post(
        "/api/v1/images/approvals/revoke",
        json={"reference": _image_ref(client, reference), "project_id": project},
    )
    console.print(
        f"revoked {untrusted(row['reference'])} for project {untrusted(row['project_id'])}", soft_wrap=True
    )


@app.command("push")
def push(reference: Annotated[str, typer.Argument(help="name@sha256:... of an imported image")]) -> None:
    """Copy an image by digest to the configured registry (TRE_IMAGE_REGISTRY; admin)."""
    client = ApiClient(timeout=UPLOAD_TIMEOUT_S)
    out = client.post("/api/v1/images/push", json={"reference": _image_ref(client, reference)})
    console.print(f"pushed {untrusted(out['reference'])}", soft_wrap=True)


@app.command("rm")
def remove(
    reference: Annotated[str, typer.Argument(help="name@sha256:... (or a unique prefix of its digest)")],
) -> None:
    """Remove your import of an image, freeing your image quota (audited). When nobody else
    imported it, or when an admin removes it, the image leaves the store; refused while it is
    approved for a project (an admin revokes that first) or a queued or running job uses it."""
    client = ApiClient()
    ref = _image_ref(client, reference)
    out = client.delete(f"/api/v1/images/{ref.rsplit('@', 1)[1]}")
    freed = f"; freed {human_size(out['freed_from_your_quota'])} of your image quota"
    if out["removed_from_store"]:
        said = f"removed {untrusted(ref)} from the image store"
    else:
        said = f"removed your import of {untrusted(ref)} (others imported it too: it stays in the store)"
    console.print(said + (freed if out["freed_from_your_quota"] else ""), soft_wrap=True)
