"""The log's side of C2SP tlog-witness: submit checkpoints to the configured witnesses.

Witnesses are configured beside the key (``keys/audit-witnesses.json``, by ``tre audit
witness add URL KEY``), with the size each last cosigned (``keys/audit-witness-state.json``).
For each witness the log sends the checkpoint with a consistency proof from that size; on 409
it resyncs to the size the witness reports and retries once; 422 (the witness cannot verify
our tree extends what it saw: a fork or a rewrite) raises a CRITICAL alert; 403/404 mean the
witness does not know this log or key (after a rotation, give the witness the new key). Valid
cosignatures are appended to the checkpoint's note, so exports and ``/tlog/checkpoint`` carry
them. Runs outside the append path: appends never wait for a witness, and no database transaction
is held while a witness answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tre import privatefile
from tre.audit.log import latest_checkpoint
from tre.audit.note import NoteError, WitnessKey, add_signature_lines, cosignatures, split_note
from tre.audit.service import StoredTree
from tre.audit.signing import AuditSigner
from tre.audit.witness_server import SIZE_TYPE, encode_request
from tre.store.models import AuditCheckpoint

WITNESSES_FILE = "audit-witnesses.json"
WITNESS_STATE_FILE = "audit-witness-state.json"
ALERT = logging.getLogger("tre.audit.alert")


@dataclass(frozen=True)
class WitnessConfig:
    url: str
    key: WitnessKey


@dataclass(frozen=True)
class Outcome:
    """What one witness did with one checkpoint."""

    witness: str
    status: str  # cosigned | offline | conflict | refused | unknown-log | error
    detail: str = ""


def _write_json(path: Path, obj: object) -> None:
    """Atomically and durably (a witness state rolled back by a power cut reads as a rollback)."""
    privatefile.replace(path, json.dumps(obj, indent=1).encode())


def load_witnesses(keys_dir: Path) -> list[WitnessConfig]:
    path = keys_dir / WITNESSES_FILE
    if not path.exists():
        return []
    return [WitnessConfig(w["url"], WitnessKey.parse(w["vkey"])) for w in json.loads(path.read_text())]


def add_witness(keys_dir: Path, url: str, vkey: str) -> WitnessConfig:
    if not url.startswith(("http://", "https://")):
        raise NoteError("witness URL must be http(s)://")
    cfg = WitnessConfig(url.rstrip("/"), WitnessKey.parse(vkey))
    others = [w for w in load_witnesses(keys_dir) if w.key != cfg.key]
    _write_json(keys_dir / WITNESSES_FILE, [{"url": w.url, "vkey": w.key.encode()} for w in [*others, cfg]])
    return cfg


def _state(keys_dir: Path) -> dict[str, int]:
    path = keys_dir / WITNESS_STATE_FILE
    return {k: int(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def witness_checkpoint(
    new_session: Callable[[], Session],
    signer: AuditSigner,
    row_id: int,
    witnesses: list[WitnessConfig] | None = None,
    timeout_s: float = 5.0,
) -> list[Outcome]:
    """Submit checkpoint ``row_id`` to every witness; store valid cosignatures in its note.

    No database transaction is open while a witness is contacted (on SQLite an open
    transaction holds the write lock, and a witness may take ``timeout_s`` to fail): proofs
    are read in short read-only sessions, cosignatures written in one short one at the end.
    """
    if signer.keys_dir is None:
        return []
    witnesses = load_witnesses(signer.keys_dir) if witnesses is None else witnesses
    with new_session() as s:
        row = s.get(AuditCheckpoint, row_id)
        if row is None:
            return []
        size, note = row.tree_size, row.note
        s.rollback()

    def proof_from(old: int) -> list[bytes]:
        if old == 0:
            return []
        with new_session() as s:
            proof = StoredTree(s, size).consistency(old)
            s.rollback()
        return proof

    state = _state(signer.keys_dir)
    outcomes: list[Outcome] = []
    text, _ = split_note(note)
    new_lines: list[str] = []
    with httpx.Client(timeout=timeout_s) as http:
        for w in witnesses:
            name = w.key.encode()
            if name in cosignatures(note, [w.key]):
                outcomes.append(Outcome(w.key.name, "cosigned", "already"))
                continue
            old = state.get(name, 0)
            outcome = Outcome(w.key.name, "error", "no answer")
            for _ in range(2):
                if old > size:
                    # The witness cosigned a larger tree than the one the log now has: it was
                    # rolled back (an old backup restored, or entries deleted and re-signed).
                    ALERT.critical(
                        "witness %s has cosigned %d entries, the log's checkpoint has %d: "
                        "the log was rolled back",
                        w.key.name,
                        old,
                        size,
                    )
                    outcome = Outcome(w.key.name, "conflict", f"witness has seen {old} entries already")
                    break
                try:
                    resp = http.post(
                        f"{w.url}/add-checkpoint",
                        content=encode_request(old, proof_from(old), note),
                        headers={"Content-Type": "text/plain"},
                    )
                except httpx.HTTPError as e:
                    outcome = Outcome(w.key.name, "offline", type(e).__name__)
                    break
                if resp.status_code == 409 and (told := _size(resp.text)) is not None:
                    old = told
                    state[name] = old
                    outcome = Outcome(w.key.name, "conflict", f"resynced to size {old}")
                    continue
                outcome = _answer(w, resp, text, size, new_lines, state)
                break
            outcomes.append(outcome)
    if new_lines:
        with new_session() as s:
            row = s.get(AuditCheckpoint, row_id)
            try:
                if row is not None:
                    row.note = add_signature_lines(row.note, new_lines)
                    s.commit()
            except NoteError as e:  # more cosignatures than a note may carry: keep it valid
                ALERT.error("cosignatures of checkpoint %d not stored: %s", size, e)
    _write_json(signer.keys_dir / WITNESS_STATE_FILE, state)
    return outcomes


# A witness's 200 answer is its cosignature line(s): read no further than this.
MAX_ANSWER_CHARS = 16 * 1024
MAX_ANSWER_LINES = 16


def _size(text: str) -> int | None:
    """A 409's body: the witness's tree size, ASCII digits of a uint64 (C2SP tlog-witness).

    Anything else (Unicode digits, a sign, a number beyond uint64 or too long for Python to
    convert) is not a size: the answer counts as an error, never an exception in the caller
    (the export endpoint submits to witnesses first) and never a size kept in the state file.
    """
    text = text.strip()
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()):
        return None
    size = int(text)
    return size if size < 2**64 else None


def _cosigns(text: str, line: str, key: WitnessKey) -> bool:
    """Whether an answer line is ``key``'s valid cosignature of ``text``; a malformed line
    (bad base64, an impossible key name) is just not one, never an exception."""
    try:
        return bool(cosignatures(text + "\n" + line + "\n", [key]))
    except NoteError:
        return False


def _answer(
    w: WitnessConfig, resp: httpx.Response, text: str, size: int, new_lines: list[str], state: dict[str, int]
) -> Outcome:
    """Interpret a witness's final answer (not a 409)."""
    if resp.status_code == 200:
        # One cosignature per witness is kept: a witness answering with many genuine lines
        # (other times) would otherwise push the stored note past the 100 signature lines a
        # note may carry, and the checkpoint would stop verifying for everyone.
        lines = [ln for ln in resp.text[:MAX_ANSWER_CHARS].splitlines() if ln][:MAX_ANSWER_LINES]
        good = next((ln for ln in lines if _cosigns(text, ln, w.key)), None)
        if good is None:
            return Outcome(w.key.name, "error", "answer holds no valid cosignature")
        new_lines.append(good)
        state[w.key.encode()] = size
        return Outcome(w.key.name, "cosigned")
    if resp.status_code == 409 and not resp.headers.get("content-type", "").startswith(SIZE_TYPE):
        # A 409 that is not a size answer: the witness cosigned another root at this very size
        # (tlog-witness). A size answer whose body is no size is a garbled answer: an error.
        ALERT.critical(
            "witness %s holds another root hash for size %d: the log has forked",
            w.key.name,
            size,
        )
        return Outcome(w.key.name, "refused", resp.text.strip()[:200])
    if resp.status_code == 422:
        ALERT.critical(
            "witness %s refuses checkpoint %d: the log cannot prove it extends what the witness "
            "saw (rewritten history or a fork)",
            w.key.name,
            size,
        )
        return Outcome(w.key.name, "refused", resp.text.strip()[:200])
    if resp.status_code in (403, 404):
        ALERT.error("witness %s does not know this log or key: %s", w.key.name, resp.text[:200])
        return Outcome(w.key.name, "unknown-log", resp.text.strip()[:200])
    return Outcome(w.key.name, "error", f"HTTP {resp.status_code}")


def witness_latest(
    new_session: Callable[[], Session], signer: AuditSigner, timeout_s: float = 5.0
) -> list[Outcome]:
    """Submit the newest checkpoint to the configured witnesses (no-op without witnesses)."""
    if signer.keys_dir is None or not load_witnesses(signer.keys_dir):
        return []
    with new_session() as s:
        row = latest_checkpoint(s)
        row_id = None if row is None else row.id
        s.rollback()
    return [] if row_id is None else witness_checkpoint(new_session, signer, row_id, timeout_s=timeout_s)


def witness_newest(engine: Engine, keys_dir: Path) -> list[Outcome]:
    """For periodic callers (the worker): never raises; failures are logged on the alert logger."""
    from tre.audit.signing import get_signer
    from tre.store.db import session_factory

    try:
        return witness_latest(session_factory(engine), get_signer(keys_dir, create=False))
    except Exception:  # noqa: BLE001 - a witness round must never stop the caller's loop
        ALERT.exception("witnessing round failed")
        return []
