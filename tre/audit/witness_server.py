"""``tre witness serve``: a standalone C2SP tlog-witness an independent party runs.

A hospital's data protection officer (say) runs this with their own Ed25519 key and the log
keys they accept. The log submits each checkpoint with a consistency proof from the last size
this witness saw; the witness checks the log's signature and the proof, remembers the new
size and root, and answers with a ``cosignature/v1`` line. Once a witness has cosigned a
tree, no checkpoint that contradicts it (an operator rewriting history, even re-signing with
the real key) will ever get its cosignature: the proof cannot verify.

Protocol (C2SP tlog-witness), ``POST /add-checkpoint`` with body::

    old <size the log believes this witness last saw>
    <base64 consistency-proof hash>        (0..63 lines)

    <signed checkpoint note>

Answers: 200 + cosignature line(s); 409 + ``<size>`` (exactly ``text/x.tlog.size``) when
``old`` is not the witness's size; 409 + a reason (text/plain) when the checkpoint has the
witness's size but another root; 422 when the proof does not verify; 403 when the note is not
signed by a known key of its origin; 404 for an unknown origin; 400 for a malformed request
(``old`` beyond the checkpoint's size included).

``GET /checkpoint?origin=<origin>`` (tre's addition, read-only) answers the last checkpoint
this witness cosigned for that log: the log's signature(s) and this witness's cosignature.
Why: a log operator who also holds the signing key can roll the log back and re-sign the
shorter (or forked) tree; the server's own guard cannot stop the key's holder, and the
witness refuses to cosign, but an auditor who never asks the witness does not see that. An
auditor fetches this note straight from the witness (`tre audit checkpoint --policy`,
`tre audit verify --policy`) and demands that the log's tree extends it.

The witness has no accounts: anyone may submit, and only checkpoints signed by a log key it
was configured with are cosigned. Bind it to the address the log reaches it on.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from tre import privatefile
from tre.audit.merkle import ProofError, verify_consistency
from tre.audit.note import (
    SIG_PREFIX,
    NoteError,
    VerifierKey,
    WitnessKey,
    b64decode_canonical,
    check_key_name,
    cosign,
    open_checkpoint_any,
    parse_checkpoint_text,
    parse_uint64,
    split_note,
)

MAX_PROOF_LINES = 63
MAX_BODY = 64 * 1024
SIZE_TYPE = "text/x.tlog.size"


class WitnessError(Exception):
    def __init__(self, status: int, message: str, media_type: str = "text/plain") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.media_type = media_type


@dataclass(frozen=True)
class AddCheckpoint:
    old: int
    proof: list[bytes]
    note: str


def encode_request(old: int, proof: list[bytes], note: str) -> bytes:
    """The add-checkpoint body a log sends."""
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def parse_request(body: bytes) -> AddCheckpoint:
    if len(body) > MAX_BODY:
        raise WitnessError(400, "request too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WitnessError(400, "request is not UTF-8") from e
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise WitnessError(400, "missing blank line between proof and checkpoint")
    lines = head.split("\n")
    word, _, size_s = lines[0].partition(" ")
    size = parse_uint64(size_s)
    if word != "old" or size is None:
        raise WitnessError(400, "first line must be 'old <size>' (a uint64)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise WitnessError(400, f"more than {MAX_PROOF_LINES} proof lines")
    proof = []
    for line in lines[1:]:
        try:
            h = b64decode_canonical(line)
        except binascii.Error as e:
            raise WitnessError(400, "proof line is not canonical base64") from e
        if len(h) != 32:
            raise WitnessError(400, "proof hash is not 32 bytes")
        proof.append(h)
    return AddCheckpoint(size, proof, note)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The witness's own key (PKCS#8 PEM, 0600), created on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        privatefile.create_once(path, pem)  # a concurrent first start's key wins
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"witness key {path} is readable by others; chmod 600 it")
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


class Witness:
    """The witness's state machine: per origin, the last (size, root) it cosigned."""

    def __init__(self, name: str, key: Ed25519PrivateKey, state_file: Path, logs: list[VerifierKey]) -> None:
        check_key_name(name)  # its cosignature lines must be readable by every verifier
        self.name = name
        self.key = key
        self.state_file = state_file
        self.logs: dict[str, list[VerifierKey]] = {}
        for k in logs:
            self.logs.setdefault(k.name, []).append(k)
        self._lock = threading.Lock()
        self._state: dict[str, dict[str, object]] = (
            json.loads(state_file.read_text()) if state_file.exists() else {}
        )

    @property
    def public_key(self) -> WitnessKey:
        return WitnessKey(self.name, self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def _save(self) -> None:
        # Durable, folder included: a witness that forgets its last cosigned size after a
        # power cut would cosign a rolled-back log (privatefile.replace).
        self.state_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        privatefile.replace(self.state_file, json.dumps(self._state).encode())

    def add_checkpoint(self, body: bytes) -> str:
        req = parse_request(body)
        try:
            text, _ = split_note(req.note)
            origin = parse_checkpoint_text(text).origin
        except NoteError as e:
            raise WitnessError(400, f"malformed checkpoint: {e}") from e
        keys = self.logs.get(origin)
        if not keys:
            raise WitnessError(404, f"unknown log {origin}")
        try:
            cp, signed_by = open_checkpoint_any(req.note, keys, origin)
        except NoteError as e:
            raise WitnessError(403, f"checkpoint not signed by a known key of {origin}: {e}") from e
        # The order of the checks is the spec's: a request whose old size exceeds its own
        # checkpoint is malformed (400) whatever this witness holds, and only then is ``old``
        # compared with the witness's size (409 with that size).
        if req.old > cp.tree_size:
            raise WitnessError(400, "old size is larger than the checkpoint's tree size")
        with self._lock:
            seen = self._state.get(origin, {"size": 0, "root": ""})
            size = int(seen["size"])  # type: ignore[call-overload]
            if req.old != size:
                raise WitnessError(409, f"{size}\n", SIZE_TYPE)
            if size > 0 and cp.tree_size == size and cp.root_hash.hex() != seen["root"]:
                # Same size, another root: a fork. 409 as the spec asks, but with a reason, not
                # a size: a log reading "<size>" would resync to the size it sent and retry.
                raise WitnessError(409, f"a checkpoint of size {size} with another root was cosigned")
            if size > 0:
                try:
                    verify_consistency(
                        size, cp.tree_size, bytes.fromhex(str(seen["root"])), cp.root_hash, req.proof
                    )
                except ProofError as e:
                    raise WitnessError(422, f"consistency proof does not verify: {e}") from e
            elif req.proof:
                raise WitnessError(422, "a proof from the empty tree must be empty")
            line = cosign(text, self.name, self.key, int(time.time()))
            # Kept whole for auditors (GET /checkpoint): the log's verified signatures and
            # ours, never other lines the submitter added.
            log_lines = "".join(
                f"{SIG_PREFIX}{name} {base64.b64encode(kid + sig).decode()}\n"
                for name, kid, sig in split_note(req.note)[1]
                if any(name == k.name and kid == k.key_id for k in signed_by)
            )
            note = f"{text}\n{log_lines}{line}"
            self._state[origin] = {"size": cp.tree_size, "root": cp.root_hash.hex(), "note": note}
            self._save()
        return line

    def latest(self, origin: str) -> str:
        """The last checkpoint of ``origin`` this witness cosigned, with its cosignature."""
        with self._lock:
            note = self._state.get(origin, {}).get("note")
        if not isinstance(note, str):
            raise WitnessError(404, f"no cosigned checkpoint of {origin}")
        return note


def _error(e: WitnessError) -> Response:
    """A refusal. The 409 size answer carries exactly ``text/x.tlog.size``, as tlog-witness
    requires (Starlette would append "; charset=utf-8" to a text media type, and Go clients
    compare the header whole); other refusals are plain UTF-8 text."""
    if e.media_type == SIZE_TYPE:
        return Response(e.message, status_code=e.status, headers={"Content-Type": SIZE_TYPE})
    return PlainTextResponse(e.message, status_code=e.status, media_type=e.media_type)


def create_witness_app(witness: Witness) -> FastAPI:
    app = FastAPI(title="tre witness", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        body = await request.body()
        try:
            line = witness.add_checkpoint(body)
        except WitnessError as e:
            return _error(e)
        return PlainTextResponse(line)

    @app.get("/checkpoint")
    async def latest_checkpoint(origin: str = "") -> Response:
        try:
            note = witness.latest(origin)
        except WitnessError as e:
            return _error(e)
        return PlainTextResponse(note)

    return app
