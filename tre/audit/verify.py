"""Offline verification of an exported audit bundle. Standard library + ``cryptography`` only.

An auditor runs this on their own machine (``tre audit verify BUNDLE`` or
``python -m tre.audit.verify BUNDLE``) and trusts nothing but the log's public key, which
they pin out of band. It recomputes every leaf hash and the Merkle tree, checks each entry's
index and hash-chain link, checks every checkpoint signature and that every checkpoint is a
root of this one tree (so all checkpoints are mutually consistent), and compares the tree
with checkpoints the auditor saw earlier (pins), which is how a fork shows up offline.

Bundle format (``tre-audit-bundle/1``), JSON Lines:

* line 1: header object (format, origin, vkey, tree_size, checkpoints count, ...);
* the next ``tree_size`` lines: entry ``i`` exactly as hashed (canonical JSON, one line);
* then ``checkpoints`` lines ``{"checkpoint": "<signed note>"}``.

Each entry carries ``idx`` (its leaf index) and ``prev`` (hex leaf hash of entry idx-1),
which is what lets the verifier name the first bad index exactly rather than only say that
a root differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeGuard
from urllib.parse import urlsplit

from tre.audit.merkle import GENESIS_PREV, TreeLevels, leaf_hashes
from tre.audit.note import (
    Checkpoint,
    NoteError,
    VerifierKey,
    WitnessKey,
    cosignatures,
    decode_note,
    open_checkpoint_any,
    open_note_any,
    parse_uint64,
    split_note,
)

BUNDLE_FORMAT = "tre-audit-bundle/1"
# Hosts that append to one log disagree on the time by a little; a checkpoint of a smaller
# tree signed up to this long after a larger one is tolerated (see _check_time_order).
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
KEY_TRANSITION_V1 = "tre.audit key transition/v1"


def _counted(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@dataclass(frozen=True)
class KeyTransition:
    """A signed statement that ``new`` takes over from ``old`` for ``origin``.

    Text (a signed note, signed by both keys)::

        tre.audit key transition/v1
        origin <origin>
        old <old verifier key>
        new <new verifier key>
        overlap-until <Unix ms>
    """

    origin: str
    old: VerifierKey
    new: VerifierKey
    overlap_until_ms: int

    def text(self) -> str:
        return (
            f"{KEY_TRANSITION_V1}\norigin {self.origin}\nold {self.old.encode()}\n"
            f"new {self.new.encode()}\noverlap-until {self.overlap_until_ms}\n"
        )


def parse_transition(text: str) -> KeyTransition:
    lines = text.split("\n")
    if len(lines) != 6 or lines[0] != KEY_TRANSITION_V1 or lines[5] != "":
        raise NoteError("not a key transition statement")
    fields = {}
    for line, name in zip(lines[1:5], ("origin", "old", "new", "overlap-until"), strict=True):
        key, _, value = line.partition(" ")
        if key != name or not value:
            raise NoteError(f"key transition: expected a {name!r} line")
        fields[name] = value
    until = parse_uint64(fields["overlap-until"])
    if until is None:
        raise NoteError("key transition: overlap-until is not a number")
    return KeyTransition(
        fields["origin"], VerifierKey.parse(fields["old"]), VerifierKey.parse(fields["new"]), until
    )


@dataclass(frozen=True)
class Policy:
    """Whom the auditor trusts: the log's key, witnesses' keys, and how many must cosign.

    Text form, one statement a line (``#`` starts a comment)::

        log <log verifier key>
        witness <witness cosignature/v1 key> [<url>]   (repeatable)
        quorum <n>                               (default: 1 if any witness is named)

    A witness's URL (``http://`` or ``https://``) is where ``tre audit checkpoint`` and
    ``tre audit verify`` fetch the last checkpoint that witness cosigned: the log must extend
    it, which is what catches a rollback by someone who holds the log's signing key.
    """

    log_key: VerifierKey
    witnesses: list[WitnessKey]
    quorum: int
    urls: dict[str, str] = field(default_factory=dict)  # encoded witness key -> base URL

    @classmethod
    def parse(cls, text: str) -> Policy:
        log_key: VerifierKey | None = None
        witnesses: list[WitnessKey] = []
        quorum: int | None = None
        urls: dict[str, str] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            word, _, value = line.partition(" ")
            value = value.strip()
            if word == "log" and log_key is None:
                log_key = VerifierKey.parse(value)
            elif word == "witness":
                key_text, _, url = value.partition(" ")
                w = WitnessKey.parse(key_text)
                if w in witnesses:
                    raise NoteError(f"policy line {n}: witness {w.name} named twice")
                # A cosignature signs the checkpoint and a time, not the witness's name: one
                # key listed under two names would cosign twice and make a quorum of 2 alone.
                if any(w.public_key == o.public_key for o in witnesses):
                    raise NoteError(f"policy line {n}: witness {w.name} has the key of another witness")
                witnesses.append(w)
                if url.strip():
                    urls[w.encode()] = _witness_url(url.strip(), n)
            elif word == "quorum" and parse_uint64(value) is not None:
                quorum = parse_uint64(value)
            else:
                raise NoteError(f"policy line {n}: expected 'log KEY', 'witness KEY' or 'quorum N'")
        if log_key is None:
            raise NoteError("policy names no log key")
        own = [w.name for w in witnesses if w.public_key == log_key.public_key]
        if own:  # whoever signs the log would witness it too: no independent check at all
            raise NoteError(f"policy witness {own[0]} has the log's own key")
        if quorum is None:
            quorum = 1 if witnesses else 0
        if quorum > len(witnesses):
            named = _counted(len(witnesses), "witness", "witnesses")
            raise NoteError(f"policy quorum {quorum} exceeds the {named} it names")
        return cls(log_key, witnesses, quorum, urls)


def _witness_url(url: str, line: int) -> str:
    """A witness's base URL: http(s), a host, no spaces, query or fragment."""
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() or not c.isprintable() for c in url)
        or len(url) > 2000
    ):
        raise NoteError(f"policy line {line}: a witness URL must be http:// or https://HOST[:PORT][/PATH]")
    return url.rstrip("/")


@dataclass
class VerifyReport:
    """What the verifier found; ``ok`` only if there is no error at all."""

    tree_size: int = 0
    root_hash: bytes = b""
    checkpoints_verified: int = 0
    checkpoints_witnessed: int = 0
    keys: list[VerifierKey] = field(default_factory=list)
    latest: Checkpoint | None = None
    latest_vouching: Checkpoint | None = None
    first_bad_index: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def bad(self, index: int | None, message: str) -> None:
        self.errors.append(message)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index
            self._headline = message

    _headline: str | None = None

    def summary(self) -> str:
        if self.ok:
            cp = self.latest
            # Counted inline, not with tre.plural: this module runs alone (standard library and
            # its own package only), the verifier an auditor copies.
            head = "no checkpoint"
            if cp:
                head = f"{_counted(cp.tree_size, 'entry', 'entries')}, root {cp.root_hash.hex()}"
            n = _counted(self.tree_size, "entry", "entries")
            c = _counted(self.checkpoints_verified, "checkpoint", "checkpoints")
            w = f" ({self.checkpoints_witnessed} witnessed by quorum)" if self.checkpoints_witnessed else ""
            return f"OK: {n} verified, {c}{w}; latest {head}"
        where = "" if self.first_bad_index is None else f" (first bad index {self.first_bad_index})"
        return f"FAILED{where}: {self._headline or self.errors[0]}"


class BundleError(ValueError):
    """The bundle cannot be read at all (wrong format, unreadable header)."""


@dataclass
class Bundle:
    header: dict[str, object]
    entries: list[bytes]
    checkpoint_notes: list[str]


def _strict_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object with distinct keys: with a repeated one, readers disagree on what the
    line says (Python keeps the last value, others the first), so the bundle means two things."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"repeated key {dup[:40]!r}")
    return dict(pairs)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def strict_json(raw: bytes | str) -> object:
    """RFC 8259 JSON as one meaning: no repeated keys, no NaN or Infinity (Python's extension),
    and bytes only as UTF-8: ``json.loads`` also takes UTF-16 and UTF-32 bytes (it guesses
    the encoding), so a header or checkpoint line re-encoded verified until round 16."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # UnicodeDecodeError is a ValueError
    return json.loads(text, object_pairs_hook=_strict_object, parse_constant=_no_constant)


def read_bundle(data: bytes) -> Bundle:
    """Split a bundle into header, raw entry lines and checkpoint notes (no checking yet).

    The header and checkpoint lines are read as strict JSON (`strict_json`): the server
    writes neither repeated keys nor NaN, so a line that has them was edited after export.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        raise BundleError(
            "the bundle starts with a byte-order mark: it was re-saved by an editor, not as exported"
        )
    if data.startswith(b"\x1f\x8b"):
        raise BundleError(
            "the bundle is gzip-compressed: decompress it first (bundles are exported uncompressed)"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4]:
        raise BundleError("the bundle is not UTF-8 (UTF-16 or UTF-32?): it was re-saved, not as exported")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise BundleError("empty bundle")
    cr = data.find(b"\r")
    if cr >= 0:
        # One spelling, the server's, which never writes a carriage return (entries and JSON
        # strings escape it): line endings converted to CRLF (a text-mode transfer) changed
        # every entry's bytes, and in the header or a checkpoint line JSON would ignore it.
        line = data.count(b"\n", 0, cr) + 1
        raise BundleError(
            f"line {line} holds a carriage return: the bundle's line endings "
            "were converted (copy it in binary mode, as exported)"
        )
    try:
        header = strict_json(lines[0])
    except (ValueError, RecursionError) as e:  # RecursionError: hostile nesting depth
        raise BundleError(f"bundle header is not JSON: {_why(e)}") from e
    if not isinstance(header, dict) or header.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a {BUNDLE_FORMAT} bundle")
    size = header.get("tree_size")
    if not _count(size):
        raise BundleError("bundle header has no valid tree_size")
    body = lines[1:]
    n_cps = header.get("checkpoints")
    if not _count(n_cps):
        raise BundleError("bundle header has no valid checkpoints count")
    # Checkpoints are the tail; whatever precedes them is entries (possibly too few/many).
    split = max(len(body) - n_cps, 0)
    notes = []
    for raw in body[split:]:
        try:
            obj = strict_json(raw)
            if (
                not isinstance(obj, dict)
                or set(obj) != {"checkpoint"}
                or not isinstance(obj["checkpoint"], str)
            ):
                raise ValueError('expected {"checkpoint": "<signed note>"}')
            notes.append(obj["checkpoint"])
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise BundleError(f"bad checkpoint line in bundle: {_why(e)}") from e
    return Bundle(header, body[:split], notes)


def _count(value: object) -> TypeGuard[int]:
    """A count in the header: a non-negative JSON integer (``true`` is not 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _why(e: Exception) -> str:
    """A parse failure in a few words: never the hostile text itself, never a traceback."""
    return "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]


def _check_entries(entries: Sequence[bytes], leaves: Sequence[bytes], report: VerifyReport) -> int | None:
    """Position and hash-chain checks. Returns the first position whose chain link breaks.

    Every entry starts ``{"idx":<i>,"prev":"<hex leaf hash of entry i-1>",``, so one prefix
    comparison per entry checks both; only a mismatching entry is parsed, to say why.
    """
    prev = GENESIS_PREV.encode()
    for i, e in enumerate(entries):
        if not e.startswith(b'{"idx":%d,"prev":"%s",' % (i, prev)):
            try:
                obj = json.loads(e)
            except (ValueError, RecursionError):
                report.bad(i, f"entry {i} is not valid JSON: it was altered or truncated")
                return None
            idx = obj.get("idx") if isinstance(obj, dict) else None
            if idx != i:
                report.bad(
                    i,
                    f"entry at position {i} claims index {idx}: entries were deleted, inserted or reordered",
                )
                return None
            return i
        prev = leaves[i].hex().encode()
    return None


def verify_bundle(
    data: bytes,
    trusted_key: VerifierKey | None = None,
    pins: Sequence[str] = (),
    policy: Policy | None = None,
) -> VerifyReport:
    """Verify a bundle against ``trusted_key`` (the auditor's pin; never the bundle's own key).

    ``pins`` are signed checkpoint notes the auditor obtained earlier; the bundle's tree must
    contain each of them, else the log was rewritten or is showing auditors different trees.
    Keys that the bundle's key history introduces, each transition signed by the key before
    it, starting from ``trusted_key``, are trusted too. With a ``policy``, only checkpoints
    cosigned by a quorum of its witnesses vouch for entries. Every entry must be vouched for
    by a signed (and, with a policy, witnessed) checkpoint, else verification fails.
    """
    report = VerifyReport()
    if trusted_key is None and policy is not None:
        trusted_key = policy.log_key
    if trusted_key is None:
        report.bad(
            None,
            "no trusted key: pin the log's key (--key or --policy); the bundle's own key proves nothing",
        )
        return report
    try:
        bundle = read_bundle(data)
    except BundleError as e:
        report.bad(None, str(e))
        return report
    header = bundle.header
    history = header.get("key_history", [])
    if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
        report.bad(None, "bundle header has a malformed key_history")
        history = []
    keys, retired = follow_key_history(trusted_key, history, report)
    report.keys = keys
    try:
        bundle_key = VerifierKey.parse(str(header.get("vkey", "")))
    except NoteError as e:
        report.bad(None, f"bundle names no usable public key: {e}")
        return report
    if bundle_key not in keys:
        report.bad(
            None,
            f"key change: the bundle is signed by {bundle_key.encode()}, which is neither your pinned key "
            f"{trusted_key.encode()} nor introduced by a key transition that key signed",
        )

    entries = bundle.entries
    n = len(entries)
    report.tree_size = n
    claimed = int(header["tree_size"])  # type: ignore[call-overload]
    if n != claimed:
        report.bad(min(n, claimed), f"bundle header says {claimed} entries but it holds {n}")

    leaves = leaf_hashes(entries)
    chain_break = _check_entries(entries, leaves, report)
    tree = TreeLevels(leaves)
    report.root_hash = tree.root()

    # Checkpoints: each must be signed by a trusted key, and be a root of this tree.
    checkpoints: list[Checkpoint] = []
    vouching: list[Checkpoint] = []
    for j, note in enumerate(bundle.checkpoint_notes):
        try:
            cp, signed_by = open_checkpoint_any(note, keys, trusted_key.name)
        except NoteError as e:
            report.bad(None, f"checkpoint #{j}: {e}")
            continue
        _check_retired(cp, signed_by, retired, report)
        checkpoints.append(cp)
        if policy is None or policy.quorum == 0:
            vouching.append(cp)
        elif len(cosignatures(note, policy.witnesses)) >= policy.quorum:
            vouching.append(cp)
            report.checkpoints_witnessed += 1
    report.checkpoints_verified = len(checkpoints)
    checkpoints.sort(key=lambda c: (c.tree_size, c.timestamp_ms or 0))
    vouching.sort(key=lambda c: (c.tree_size, c.timestamp_ms or 0))
    proven = 0  # entries [0, proven) match a vouching checkpoint
    mismatch: int | None = None  # smallest signed size whose root differs
    seen: dict[int, bytes] = {}
    vouched_ids = {id(c) for c in vouching}
    for cp in checkpoints:
        other = seen.setdefault(cp.tree_size, cp.root_hash)
        if other != cp.root_hash:
            report.bad(
                None, f"two signed checkpoints of size {cp.tree_size} have different roots: the log forked"
            )
        if cp.tree_size > n:
            report.bad(
                n, f"log truncated: a signed checkpoint covers {cp.tree_size} entries, the bundle has {n}"
            )
            continue
        if tree.root(cp.tree_size) == cp.root_hash:
            if mismatch is None and id(cp) in vouched_ids:
                proven = max(proven, cp.tree_size)
        elif mismatch is None:
            mismatch = cp.tree_size
    _check_time_order(checkpoints, report)

    chain_bad: int | None = None
    if chain_break is not None:
        # Entry chain_break does not commit to entry chain_break-1's hash: that entry was altered,
        # unless a signed checkpoint vouches for it, in which case the break itself is bad.
        chain_bad = chain_break - 1 if chain_break - 1 >= proven else chain_break
        report.bad(
            chain_bad,
            f"entry {chain_bad} does not match the hash recorded by entry {chain_break}: the log was altered",
        )
    if mismatch is not None:
        message = (
            f"entries in [{proven}, {mismatch}) do not reproduce the signed root at size {mismatch}: "
            "the log was altered or forked"
        )
        # The hash chain pins the culprit more precisely when it falls inside the same range.
        found = report.first_bad_index
        explained = found is not None and proven <= found < mismatch
        report.bad(None if explained else proven, message)
    if checkpoints:
        report.latest = checkpoints[-1]
    if vouching:
        report.latest_vouching = vouching[-1]
    what = (
        "signed checkpoint"
        if policy is None or policy.quorum == 0
        else (f"checkpoint cosigned by {policy.quorum} of the policy's {len(policy.witnesses)} witnesses")
    )
    covered = max((c.tree_size for c in vouching if c.tree_size <= n), default=0)
    if not vouching:
        report.bad(0 if n else None, f"the bundle holds no valid {what}")
    elif covered < n:
        report.bad(
            covered,
            f"entries {covered}..{n - 1} are not covered by any {what}: they are not verified "
            "(appended after the last signature, or a rewritten tail whose checkpoints were dropped)",
        )

    _check_header_claims(header, trusted_key.name, checkpoints, report)
    for note in pins:
        _check_pin(note, keys, trusted_key.name, tree, n, report)
    return report


def _check_header_claims(
    header: dict[str, object], origin: str, checkpoints: Sequence[Checkpoint], report: VerifyReport
) -> None:
    """The header's unsigned claims against what is signed (round 17; read by nothing before).

    ``origin`` must be the log the pinned key and the checkpoints are of: a header naming
    another log (edited, or a bundle relabelled) is an error. ``exported_at`` must be a UTC
    time no earlier than the newest checkpoint the bundle holds (less `MAX_CLOCK_SKEW_MS`):
    the server exports what was signed before, so an earlier one was edited. One later than
    this machine's clock by more than the skew is a warning (the header, or one of the two
    clocks, is wrong); so is a checkpoint signed that far in the future.
    """
    claimed = header.get("origin")
    if claimed != origin:
        shown = repr(claimed)[:80] if isinstance(claimed, str) else "none"
        report.bad(
            None,
            f"bundle header names origin {shown}, but your key and its checkpoints are of {origin!r}: "
            "the header was edited, or the bundle was relabelled from another log",
        )
    exported = _utc_ms(header.get("exported_at"))
    if exported is None:
        report.bad(None, "bundle header has no exported_at time in UTC (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)")
        return
    now = int(time.time() * 1000)
    stamps = [c.timestamp_ms for c in checkpoints if c.timestamp_ms is not None]
    newest = max(stamps, default=None)
    if newest is not None and exported < newest - MAX_CLOCK_SKEW_MS:
        report.bad(
            None,
            f"bundle header says it was exported at {_iso(exported)}, before its newest checkpoint "
            f"was signed ({_iso(newest)}): the header was edited",
        )
    if exported > now + MAX_CLOCK_SKEW_MS:
        report.warnings.append(
            f"bundle header says it was exported at {_iso(exported)}, in the future by this "
            "machine's clock: the header was edited, or one of the two clocks is wrong"
        )
    if newest is not None and newest > now + MAX_CLOCK_SKEW_MS:
        report.warnings.append(
            f"a checkpoint is signed with a time in the future ({_iso(newest)}) by this machine's "
            "clock: the log's clock, or this one, is wrong (or the key signs what it is given)"
        )


def _utc_ms(value: object) -> int | None:
    """Milliseconds since the epoch of an ISO 8601 UTC time as the exporter writes it, or None."""
    if not isinstance(value, str) or len(value) > 40 or not value.endswith("Z"):
        return None
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def follow_key_history(
    pinned: VerifierKey, notes: Sequence[str], report: VerifyReport
) -> tuple[list[VerifierKey], dict[VerifierKey, int]]:
    """Keys trusted from ``pinned`` on: each transition must be signed by the key it retires.

    Returns the trusted keys (oldest first; the newest is the one to pin next) and, for each
    retired key, the end of its overlap period (Unix ms) after which checkpoints signed only by
    it are refused. Transitions that do not start from the current key (older history, or
    unrelated) are ignored; one that claims to start from it but is not signed by it is an error.
    """
    keys = [pinned]
    retired: dict[VerifierKey, int] = {}
    for j, note in enumerate(notes):
        try:
            text, _ = split_note(note)
            t = parse_transition(text)
        except NoteError as e:
            report.bad(None, f"key history #{j}: {e}")
            continue
        if t.origin != pinned.name or t.old != keys[-1] or t.new in keys:
            continue
        try:
            _, signed = open_note_any(note, [t.old, t.new])
        except NoteError as e:
            report.bad(None, f"key history #{j}: transition to {t.new.encode()} is not valid: {e}")
            continue
        if t.old not in signed or t.new not in signed:
            report.bad(None, f"key history #{j}: a transition must be signed by both the old and the new key")
            continue
        retired[t.old] = t.overlap_until_ms
        keys.append(t.new)
    # Backwards too: an auditor who pinned a newer key trusts the keys it replaced (each
    # transition is signed by the newer key as well), for checkpoints until their overlap ended.
    for note in reversed(notes):
        back = _doubly_signed(note)
        if back is not None and back.origin == pinned.name and back.new == keys[0] and back.old not in keys:
            retired[back.old] = back.overlap_until_ms
            keys.insert(0, back.old)
    _check_single_successor(pinned.name, keys, notes, report)
    return keys, retired


def _doubly_signed(note: str) -> KeyTransition | None:
    """The transition ``note`` states when both its old and its new key signed it, else None
    (the forward walk in `follow_key_history` reports such notes; the other walks skip them)."""
    try:
        t = parse_transition(split_note(note)[0])
        _, signed = open_note_any(note, [t.old, t.new])
    except NoteError:
        return None
    return t if t.old in signed and t.new in signed else None


def _check_single_successor(
    origin: str, keys: Sequence[VerifierKey], notes: Sequence[str], report: VerifyReport
) -> None:
    """A trusted key hands over to one key only. The log never rotates away from a key
    twice, so two valid transitions from one trusted key to different keys mean someone
    else holds it (a retired key, perhaps rotated out because it leaked, introducing a key
    of their own): an error, whichever of the two the history above followed."""
    successors: dict[VerifierKey, set[VerifierKey]] = {}
    for note in notes:
        t = _doubly_signed(note)
        if t is not None and t.origin == origin and t.old in keys:
            successors.setdefault(t.old, set()).add(t.new)
    for old, new in successors.items():
        if len(new) > 1:
            report.bad(
                None,
                f"key history forks: {old.encode()} hands over to {len(new)} different keys "
                "(someone else holds that key)",
            )


def _check_retired(
    cp: Checkpoint, signed_by: Sequence[VerifierKey], retired: dict[VerifierKey, int], report: VerifyReport
) -> None:
    """A retired key may sign only until its overlap ends (within the clock-skew bound)."""
    if signed_only_after_retirement(cp, signed_by, retired):
        report.bad(
            None,
            f"checkpoint of size {cp.tree_size} is signed only by a retired key after its overlap ended",
        )


def signed_only_after_retirement(
    cp: Checkpoint, signed_by: Sequence[VerifierKey], retired: dict[VerifierKey, int]
) -> bool:
    """Whether every key that signed ``cp`` is retired and ``cp`` is dated after the end of
    their overlap (plus the clock-skew bound), or undated: such a checkpoint vouches for
    nothing, in a bundle as online (`tre audit checkpoint`, `tiles`), since whoever holds a
    retired key (perhaps rotated out because it leaked) can sign any tree with it."""
    if not signed_by or any(k not in retired for k in signed_by):
        return False
    ends = max(retired[k] for k in signed_by)
    ts = cp.timestamp_ms
    return ts is None or ts > ends + MAX_CLOCK_SKEW_MS


def _check_time_order(checkpoints: Sequence[Checkpoint], report: VerifyReport) -> None:
    """A checkpoint signed later must never describe a smaller tree (only timestamped ones).

    The log's order is the tree size, not the clocks: several hosts append, and their clocks
    differ. Only a smaller tree signed more than ``MAX_CLOCK_SKEW_MS`` after a larger one is
    an error (a host's clock that far off is itself worth an alarm).
    """
    stamped = sorted(
        (c for c in checkpoints if c.timestamp_ms is not None), key=lambda c: c.timestamp_ms or 0
    )
    biggest: Checkpoint | None = None
    for cp in stamped:
        if (
            biggest is not None
            and cp.tree_size < biggest.tree_size
            and (cp.timestamp_ms or 0) - (biggest.timestamp_ms or 0) > MAX_CLOCK_SKEW_MS
        ):
            report.bad(
                None, f"checkpoint of size {cp.tree_size} was signed after one of size {biggest.tree_size}"
            )
        if biggest is None or cp.tree_size >= biggest.tree_size:
            biggest = cp


def _check_pin(
    note: str, keys: list[VerifierKey], origin: str, tree: TreeLevels, n: int, report: VerifyReport
) -> None:
    try:
        pin, _ = open_checkpoint_any(note, keys, origin)
    except NoteError as e:
        report.bad(None, f"pinned checkpoint: {e}")
        return
    if pin.tree_size > n:
        # Also what a bundle exported before the pinned checkpoint looks like (the README's
        # auditor runs `checkpoint` after `export`): say how to tell the two apart.
        report.bad(
            n,
            f"log truncated: you saw a signed tree of {pin.tree_size} entries, the bundle has {n}: "
            "export a newer bundle (tre audit export); if a new export is still shorter, the log "
            "was truncated",
        )
    elif tree.root(pin.tree_size) != pin.root_hash:
        report.bad(
            None,
            f"fork: the bundle's tree at size {pin.tree_size} differs from the checkpoint you pinned "
            "(the server rewrote history or shows different logs to different auditors)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tre.audit.verify BUNDLE --key VKEY [--pin NOTE]... [--policy FILE]``; 0 if valid."""
    ap = argparse.ArgumentParser(description="Verify a tre audit bundle offline.")
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--key", help="trusted verifier key (<name>+<id>+<base64>) or a file holding it")
    ap.add_argument("--pin", action="append", default=[], type=Path, help="a checkpoint note seen earlier")
    ap.add_argument("--policy", type=Path, help="witness policy file: log key, witness keys, quorum")
    args = ap.parse_args(argv)
    key = None
    policy = None
    try:
        if args.key:
            text = Path(args.key).read_text() if Path(args.key).is_file() else args.key
            key = VerifierKey.parse(text)
        if args.policy:
            policy = Policy.parse(args.policy.read_text())
        pins = [decode_note(p.read_bytes()) for p in args.pin]
        data = args.bundle.read_bytes()
    except (NoteError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = verify_bundle(data, key, pins, policy)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(report.summary())
    for err in report.errors:
        print(f"  - {err}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
