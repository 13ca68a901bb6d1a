"""``tre witness``: run a standalone C2SP tlog-witness for someone else's log.

The witness is run by an independent party with their own key; it needs no tre database or
account. ``tre witness key`` prints the key to give the log operator (``tre audit witness
add``) and the auditors (their verification policy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tre.audit.note import NoteError, VerifierKey
from tre.cli.client import CliError
from tre.cli.output import PortOption, console

app = typer.Typer(help="Standalone witness for a tre audit log (C2SP tlog-witness).")


def _name(name: str) -> str:
    """The witness's name, checked before any key file is created (one line if unusable)."""
    from tre.audit.note import check_key_name

    try:
        check_key_name(name)
    except NoteError as e:
        raise CliError(f"bad witness name: {str(e).encode('ascii', 'backslashreplace').decode()}") from e
    return name


def _default_dir() -> Path:
    from tre.config import get_settings

    return get_settings().home / "witness"


@app.command("key")
def key(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. dpo.hospital.example.")],
    key_file: Annotated[Path | None, typer.Option(help="Private key (PEM); created if missing.")] = None,
) -> None:
    """Print this witness's cosignature/v1 verifier key (creating the private key if needed)."""
    from tre.audit.witness_server import Witness, load_or_create_key

    name = _name(name)
    path = key_file or _default_dir() / "witness-ed25519.pem"
    w = Witness(name, load_or_create_key(path), path.with_name("state.json"), [])
    console.print(w.public_key.encode(), highlight=False, soft_wrap=True)


@app.command("serve")
def serve(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. dpo.hospital.example.")],
    log: Annotated[list[str], typer.Option(help="A log verifier key to accept (repeatable).")],
    key_file: Annotated[Path | None, typer.Option(help="Private key (PEM); created if missing.")] = None,
    state: Annotated[Path | None, typer.Option(help="State file: last size and root seen per log.")] = None,
    host: str = "127.0.0.1",
    port: PortOption = 8790,
) -> None:
    """Serve POST /add-checkpoint: verify consistency with the last size seen, then cosign."""
    import uvicorn

    from tre.audit.witness_server import Witness, create_witness_app, load_or_create_key
    from tre.listen import ensure_can_listen

    name = _name(name)
    ensure_can_listen(host, port, "tre witness serve")
    try:
        logs = [VerifierKey.parse(k) for k in log]
    except NoteError as e:
        raise CliError(f"bad log key: {e}") from e
    path = key_file or _default_dir() / "witness-ed25519.pem"
    witness = Witness(name, load_or_create_key(path), state or path.with_name("state.json"), logs)
    console.print(
        f"witness {witness.public_key.encode()} on http://{host}:{port}", highlight=False, soft_wrap=True
    )
    uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="warning")
