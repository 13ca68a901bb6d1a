"""Auditor commands: verify a bundle offline, search, export, and check the live checkpoint.

``verify`` needs no server and no account: it uses only ``tre.audit.verify``. ``checkpoint``
keeps the last verified checkpoint under ``~/.tre/audit/`` and demands a consistency proof
from it to the server's newest one, so a server that rewrites history, or shows different
trees to different auditors, is caught the next time any of them looks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tre.audit.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from tre.audit.note import Checkpoint, NoteError, VerifierKey, open_checkpoint
from tre.audit.verify import verify_bundle
from tre.cli.client import ApiClient, CliError
from tre.cli.output import console, err_console, table
from tre.config import get_settings

app = typer.Typer(help="Signed audit log: verify bundles offline, search, export, check checkpoints.")


def state_dir() -> Path:
    return get_settings().home / "audit"


def _load_key(key: str | None) -> VerifierKey | None:
    """A verifier key given inline, as a file, or the one pinned by `tre audit checkpoint`."""
    try:
        if key:
            path = Path(key)
            return VerifierKey.parse(path.read_text() if path.is_file() else key)
        pinned = state_dir() / "log.vkey"
        return VerifierKey.parse(pinned.read_text()) if pinned.is_file() else None
    except NoteError as e:
        raise CliError(f"bad verifier key: {e}") from e


@app.command()
def verify(
    bundle: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Bundle from `tre audit export`.")
    ],
    key: Annotated[
        str | None, typer.Option(help="Trusted log key (vkey string or file); default: the pinned one.")
    ] = None,
    pin: Annotated[
        list[Path] | None, typer.Option(help="A checkpoint note you saw earlier (repeatable).")
    ] = None,
    no_pinned: Annotated[
        bool, typer.Option("--no-pinned", help="Ignore ~/.tre/audit/checkpoint.note.")
    ] = False,
) -> None:
    """Verify an exported bundle offline: tree, hash chain, checkpoint signatures, pins."""
    vkey = _load_key(key)
    notes = [p.read_text() for p in pin or []]
    saved = state_dir() / "checkpoint.note"
    if not no_pinned and vkey is not None and not key and saved.is_file():
        notes.append(saved.read_text())
    report = verify_bundle(bundle.read_bytes(), vkey, notes)
    for w in report.warnings:
        err_console.print(f"warning: {w}", highlight=False, soft_wrap=True)
    if report.ok:
        console.print(report.summary(), highlight=False, soft_wrap=True)
        return
    for e in report.errors:
        err_console.print(f"  - {e}", highlight=False, soft_wrap=True)
    raise CliError(report.summary())


@app.command()
def search(
    user: Annotated[str | None, typer.Option("--user", "--actor", help="Who acted.")] = None,
    project: Annotated[str | None, typer.Option(help="Project id.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset id.")] = None,
    job: Annotated[str | None, typer.Option(help="Job id.")] = None,
    action: Annotated[str | None, typer.Option(help="Action, e.g. job.submit.")] = None,
    since: Annotated[datetime | None, typer.Option(help="From this time (UTC unless zoned).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Before this time (UTC unless zoned).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most entries to show.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON entry per line.")] = False,
) -> None:
    """Search the audit log (auditor role)."""
    params: dict[str, Any] = {
        k: v
        for k, v in {
            "actor": user,
            "project_id": project,
            "dataset_id": dataset,
            "job_id": job,
            "action": action,
            "since": _zoned(since),
            "until": _zoned(until),
        }.items()
        if v is not None
    }
    client = ApiClient()
    items: list[dict[str, Any]] = []
    after = -1
    while len(items) < limit:
        page = client.get(
            "/api/v1/audit/entries", params={**params, "after": after, "limit": min(1000, limit - len(items))}
        )
        items.extend(page["items"])
        if page.get("next_after") is None:
            break
        after = page["next_after"]
    if as_json:
        for it in items:
            console.print_json(json.dumps({k: v for k, v in it.items() if k != "body"}))
        return
    table(
        f"audit entries ({len(items)})",
        ["idx", "time", "actor", "action", "project", "dataset", "job", "details"],
        (
            [
                it["idx"],
                it["timestamp"],
                it["actor"],
                it["action"],
                it["project_id"],
                it["dataset_id"],
                it["job_id"],
                json.dumps(it["details"], sort_keys=True)[:80],
            ]
            for it in items
        ),
    )


def _zoned(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="Where to write the bundle (.jsonl).")],
    tree_size: Annotated[int | None, typer.Option(help="Export this many entries (a signed size).")] = None,
    max_checkpoints: Annotated[int, typer.Option(help="Most checkpoints to include.")] = 1000,
) -> None:
    """Download a bundle (entries + checkpoints + public key) for offline `tre audit verify`."""
    params: dict[str, Any] = {"max_checkpoints": max_checkpoints}
    if tree_size is not None:
        params["tree_size"] = tree_size
    client = ApiClient()
    query = "&".join(f"{k}={v}" for k, v in params.items())
    size = client.download(f"/api/v1/audit/export?{query}", out, progress=True)
    console.print(
        f"wrote {out} ({size} bytes); check it with: tre audit verify {out}", highlight=False, soft_wrap=True
    )


@app.command("public-key")
def public_key() -> None:
    """Print the log's verifier key (pin it out of band, e.g. in your audit records)."""
    console.print(ApiClient().get("/api/v1/audit/public-key")["vkey"], highlight=False, soft_wrap=True)


def _save(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@app.command()
def checkpoint(
    key: Annotated[
        str | None, typer.Option(help="Trusted log key; default: pinned, else trust the server once.")
    ] = None,
) -> None:
    """Fetch the newest checkpoint, check its signature and its consistency with the one you saw last.

    The first run pins the log key and checkpoint (trust on first use, unless --key); each
    later run fails loudly if the server cannot prove the new tree extends the pinned one.
    """
    client = ApiClient()
    sdir = state_dir()
    vkey = _load_key(key)
    if vkey is None:
        vkey = VerifierKey.parse(client.get("/api/v1/audit/public-key")["vkey"])
        err_console.print(
            f"warning: pinning the server's key on first use: {vkey.encode()}",
            highlight=False,
            soft_wrap=True,
        )
    latest = client.get("/api/v1/audit/checkpoint")
    try:
        new = open_checkpoint(latest["note"], vkey)
    except NoteError as e:
        raise CliError(f"the server's checkpoint is not valid: {e}") from e
    pin_path = sdir / "checkpoint.note"
    old: Checkpoint | None = None
    if pin_path.is_file():
        old = open_checkpoint(pin_path.read_text(), vkey)
        if new.tree_size < old.tree_size:
            raise CliError(
                f"the log shrank from {old.tree_size} to {new.tree_size} entries: it was truncated"
            )
        proof = client.get(
            "/api/v1/audit/proof/consistency", params={"first": old.tree_size, "second": new.tree_size}
        )
        try:
            verify_consistency(
                old.tree_size,
                new.tree_size,
                old.root_hash,
                new.root_hash,
                [bytes.fromhex(h) for h in proof["proof"]],
            )
        except ProofError as e:
            raise CliError(
                f"FORK: the server's tree of {new.tree_size} entries does not extend the tree of "
                f"{old.tree_size} entries you verified before ({e}); keep {pin_path} as evidence"
            ) from e
    _save(sdir / "log.vkey", vkey.encode() + "\n")
    _save(pin_path, new.note)
    since = f", consistent with the pinned size {old.tree_size}" if old else " (first pin)"
    console.print(
        f"checkpoint OK: {new.tree_size} entries, root {new.root_hash.hex()}{since}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def prove(index: Annotated[int, typer.Argument(min=0, help="Leaf index of the entry.")]) -> None:
    """Check that an entry is in the log, against your pinned checkpoint (run `checkpoint` first)."""
    vkey = _load_key(None)
    pin_path = state_dir() / "checkpoint.note"
    if vkey is None or not pin_path.is_file():
        raise CliError("no pinned checkpoint: run `tre audit checkpoint` first")
    cp = open_checkpoint(pin_path.read_text(), vkey)
    if index >= cp.tree_size:
        raise CliError(
            f"entry {index} is newer than your pinned checkpoint ({cp.tree_size}); re-run checkpoint"
        )
    client = ApiClient()
    entry = client.get(f"/api/v1/audit/entries/{index}")
    proof = client.get("/api/v1/audit/proof/inclusion", params={"index": index, "tree_size": cp.tree_size})
    try:
        verify_inclusion(
            leaf_hash(entry["body"].encode()),
            index,
            cp.tree_size,
            [bytes.fromhex(h) for h in proof["proof"]],
            cp.root_hash,
        )
    except ProofError as e:
        raise CliError(f"entry {index} is NOT proven to be in the log: {e}") from e
    console.print(
        f"entry {index} ({entry['action']} by {entry['actor']}) is in the log of {cp.tree_size} entries",
        highlight=False,
        soft_wrap=True,
    )
