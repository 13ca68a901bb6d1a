"""The researcher's code on the CLI: `submit --code` packing and upload, and `tre job ...`.

`upload_code` packs a folder into one deterministic tar.gz (or takes a .tar.gz as it is),
refuses locally what the server would refuse (the same checks, under the project's quota
read from the API), uploads it and checks that the server stored the bytes it was sent.
`tre job show` prints one job with its code hash; `tre job code` downloads or lists the
exact code a job ran (DAC members, auditors, admins; researchers for their own projects).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from tre.cli.client import ApiClient, CliError, credentials_path
from tre.cli.output import (
    ENDING,
    JsonFlag,
    UsageMistake,
    console,
    err_console,
    human_size,
    print_json,
    table,
    untrusted,
    utc_time,
)
from tre.cli.resolve import resolve_job_id
from tre.code.archive import CodeLimits, CodeRefused, inspect_file, pack_folder, virtual_environments
from tre.config import get_settings

job_app = typer.Typer(help="One job: its details, and the code it ran.", no_args_is_help=True)


def _limits(client: ApiClient, project: str) -> CodeLimits:
    p = client.get(f"/api/v1/projects/{project}")
    return CodeLimits.of_project(int(p["max_code_mb"]), int(p["max_code_files"]))


def _own_state(folder: Path) -> list[Path]:
    """tre's own secrets and state inside the code folder: the saved login
    (`credentials.json`), the keys folder, and the state and cache folders when they lie
    inside it. `tre submit --code .` run where the state lives (`~` holds `~/.tre`; a TRE_HOME
    under the project folder) packed the researcher's token into the code archive, which
    reviewers, auditors and the job itself can read. They are left out, and stderr says so.
    (A code folder inside the state folder, as the demo's is, holds none of them.)"""
    folder = folder.resolve()  # the places below are resolved: compare like with like
    settings = get_settings()
    places = (credentials_path(), settings.keys_dir, settings.home, settings.cache_dir)
    inside: list[Path] = []
    for place in places:
        resolved = place.resolve()
        strictly_inside = resolved != folder and resolved.is_relative_to(folder)
        if strictly_inside and not any(resolved.is_relative_to(p) for p in inside):
            inside = [p for p in inside if not p.is_relative_to(resolved)] + [resolved]
    for resolved in inside:
        err_console.print(
            f"left out {resolved}: tre's own state (a saved login, keys) never goes with the code",
            highlight=False,
            markup=False,
        )
    return inside


def _venvs(folder: Path) -> list[Path]:
    """Python virtual environments inside the code folder, left out and named on stderr
    (`tre.code.archive.virtual_environments` says why)."""
    found = virtual_environments(folder.resolve())
    for venv in found:
        err_console.print(
            f"left out {venv}: a Python virtual environment (its interpreter is this machine's); "
            "install the job's packages in its image",
            highlight=False,
            markup=False,
        )
    return found


def upload_code(client: ApiClient, project: str, path: Path, announce: bool = True) -> str:
    """Pack (if a folder), check, upload; returns the archive's SHA-256 as the server stored it.

    ``announce``: say what was stored on stdout (off for `--json`, whose stdout is the record)."""
    limits = _limits(client, project)
    path = path.resolve()
    with tempfile.TemporaryFile() as packed:
        source: BinaryIO
        if path.is_dir():
            manifest = pack_folder(path, packed, limits, leave_out=_own_state(path) + _venvs(path))
            source = packed
        elif path.is_file():
            if not path.name.endswith((".tar.gz", ".tgz")):
                raise CodeRefused(f"{path} is neither a folder nor a .tar.gz archive")
            manifest = inspect_file(path, limits)
            source = path.open("rb")
        else:
            raise CliError(f"--code {path}: no such folder or file")
        with source:
            digest = hashlib.sha256()
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
            size = source.tell()
            if size > limits.max_bytes:
                raise CodeRefused(
                    f"the code archive is {size / (1 << 20):.1f} MiB, over the project's quota of "
                    f"{limits.describe_bytes()}"
                )
            source.seek(0)
            stored = client.post(
                "/api/v1/code",
                params={"project_id": project},
                content=source,
                headers={"Content-Type": "application/gzip", "Content-Length": str(size)},
                timeout=300.0,
            )
    if stored["sha256"] != digest.hexdigest():
        raise CliError(f"the server stored code {stored['sha256']}, not the {digest.hexdigest()} sent")
    again = ", already stored" if stored["already_stored"] else ""
    entries = "entry" if manifest.entry_count == 1 else "entries"
    (console if announce else err_console).print(
        f"code {stored['sha256'][:16]}… ({manifest.entry_count} {entries}, "
        f"{human_size(manifest.total_bytes)} unpacked{again})"
    )
    return str(stored["sha256"])


@job_app.command("show")
def show(job_id: str, as_json: JsonFlag = False) -> None:
    """Show one job: image, command, datasets, input jobs and their lineage, code hash, state
    and times. JOB_ID may be any unique prefix of the id."""
    client = ApiClient()
    j = client.get(f"/api/v1/jobs/{resolve_job_id(client, job_id)}")
    if as_json:
        print_json(j)
        return
    rows = [
        ("id", j["id"]),
        ("project", j["project_id"]),
        ("submitted by", j["submitted_by"]),
        ("image", j["image"]),
        ("command", " ".join(j["command"])),
        ("datasets", ", ".join(j["dataset_ids"]) or "-"),
        # Earlier jobs it reads at /inputs/<id>, and the datasets their outputs derive from.
        ("inputs", ", ".join(j.get("input_job_ids") or []) or "-"),
        ("lineage", ", ".join(j.get("lineage_dataset_ids") or []) or "-"),
        ("code", j.get("code_hash") or "-"),
        ("state", ENDING if j.get("end_pending") else j["state"]),
        ("reason", j["reason"] or "-"),
        ("exit code", "-" if j["exit_code"] is None else j["exit_code"]),
        ("created", utc_time(j["created_at"], seconds=True)),
        ("started", utc_time(j["started_at"], seconds=True)),
        ("finished", utc_time(j["finished_at"], seconds=True)),
    ]
    for key, value in rows:
        console.print(f"{key:>13}: {untrusted(value)}", soft_wrap=True)


@job_app.command("code")
def code(
    job_id: str,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the archive here.")] = None,
    list_files: Annotated[bool, typer.Option("--list", help="List the files in the archive.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: the listing as JSON.")] = False,
) -> None:
    """Download (-o FILE) or list (--list) the exact code archive a job ran (JOB_ID: any
    unique prefix)."""
    if out is None and not list_files:
        raise UsageMistake("say what to do with the code: -o FILE to download it, --list to list its files")
    client = ApiClient()
    job_id = resolve_job_id(client, job_id)
    if list_files:
        listing = client.get(f"/api/v1/jobs/{job_id}/code/files")
        if as_json:
            print_json(listing)
        else:
            table(
                f"code {listing['code_hash']} of job {job_id}",
                ["path", "kind", "size", "target"],
                [
                    (e["path"], e["kind"], human_size(e["size"]), e["target"] or "")
                    for e in listing["entries"]
                ],
            )
    if out is not None:
        headers: dict[str, str] = {}
        # Checked against the answer's X-Code-SHA256 before `out` is replaced: a wrong answer
        # never takes the place of a file already there.
        client.download(
            f"/api/v1/jobs/{job_id}/code",
            out,
            progress=False,
            headers_out=headers,
            expect=("application/gzip",),
            sha256_header="X-Code-SHA256",
        )
        digest = headers["x-code-sha256"].lower()
        (err_console if as_json else console).print(f"saved code {digest} of job {job_id} to {out}")
