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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tre.audit.merkle import TreeLevels, leaf_hashes
from tre.audit.note import Checkpoint, NoteError, VerifierKey, open_checkpoint

BUNDLE_FORMAT = "tre-audit-bundle/1"
GENESIS_PREV = "0" * 64


@dataclass
class VerifyReport:
    """What the verifier found; ``ok`` only if there is no error at all."""

    tree_size: int = 0
    root_hash: bytes = b""
    checkpoints_verified: int = 0
    latest: Checkpoint | None = None
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
            head = f"{cp.tree_size} entries, root {cp.root_hash.hex()}" if cp else "no checkpoint"
            n, c = self.tree_size, self.checkpoints_verified
            return f"OK: {n} entries verified, {c} checkpoints; latest {head}"
        where = "" if self.first_bad_index is None else f" (first bad index {self.first_bad_index})"
        return f"FAILED{where}: {self._headline or self.errors[0]}"


class BundleError(ValueError):
    """The bundle cannot be read at all (wrong format, unreadable header)."""


@dataclass
class Bundle:
    header: dict[str, object]
    entries: list[bytes]
    checkpoint_notes: list[str]


def read_bundle(data: bytes) -> Bundle:
    """Split a bundle into header, raw entry lines and checkpoint notes (no checking yet)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise BundleError("empty bundle")
    try:
        header = json.loads(lines[0])
    except ValueError as e:
        raise BundleError(f"bundle header is not JSON: {e}") from e
    if not isinstance(header, dict) or header.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a {BUNDLE_FORMAT} bundle")
    size = header.get("tree_size")
    if not isinstance(size, int) or size < 0:
        raise BundleError("bundle header has no valid tree_size")
    body = lines[1:]
    n_cps = header.get("checkpoints")
    if not isinstance(n_cps, int) or n_cps < 0:
        raise BundleError("bundle header has no valid checkpoints count")
    # Checkpoints are the tail; whatever precedes them is entries (possibly too few/many).
    split = max(len(body) - n_cps, 0)
    notes = []
    for raw in body[split:]:
        try:
            obj = json.loads(raw)
            notes.append(str(obj["checkpoint"]))
        except (ValueError, KeyError, TypeError) as e:
            raise BundleError(f"bad checkpoint line in bundle: {e}") from e
    return Bundle(header, body[:split], notes)


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
            except ValueError:
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
) -> VerifyReport:
    """Verify a bundle against ``trusted_key`` (else the key named in the bundle, with a warning).

    ``pins`` are signed checkpoint notes the auditor obtained earlier; the bundle's tree must
    contain each of them, else the log was rewritten or is showing auditors different trees.
    """
    report = VerifyReport()
    try:
        bundle = read_bundle(data)
    except BundleError as e:
        report.bad(None, str(e))
        return report
    header = bundle.header
    if trusted_key is None:
        try:
            trusted_key = VerifierKey.parse(str(header.get("vkey", "")))
        except NoteError as e:
            report.bad(None, f"bundle names no usable public key: {e}")
            return report
        report.warnings.append(
            "trusting the public key inside the bundle; pin the log's key (--key) to detect a replaced key"
        )
    elif header.get("vkey") != trusted_key.encode():
        report.warnings.append("the bundle names a different public key than the trusted one")

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

    # Checkpoints: each must be signed by the trusted key, and be a root of this tree.
    checkpoints: list[Checkpoint] = []
    for j, note in enumerate(bundle.checkpoint_notes):
        try:
            checkpoints.append(open_checkpoint(note, trusted_key))
        except NoteError as e:
            report.bad(None, f"checkpoint #{j}: {e}")
    report.checkpoints_verified = len(checkpoints)
    checkpoints.sort(key=lambda c: (c.tree_size, c.timestamp_ms or 0))
    proven = 0  # entries [0, proven) match a signed checkpoint
    mismatch: int | None = None  # smallest signed size whose root differs
    seen: dict[int, bytes] = {}
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
            if mismatch is None:
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
        if report.latest.tree_size < n:
            report.warnings.append(
                f"entries {report.latest.tree_size}..{n - 1} are not covered by any signed checkpoint"
            )
    else:
        report.bad(None, "the bundle holds no valid signed checkpoint")

    for note in pins:
        _check_pin(note, trusted_key, tree, n, report)
    return report


def _check_time_order(checkpoints: Sequence[Checkpoint], report: VerifyReport) -> None:
    """A checkpoint signed later must never describe a smaller tree (only timestamped ones)."""
    stamped = sorted(
        (c for c in checkpoints if c.timestamp_ms is not None), key=lambda c: c.timestamp_ms or 0
    )
    biggest: Checkpoint | None = None
    for cp in stamped:
        if (
            biggest is not None
            and cp.tree_size < biggest.tree_size
            and cp.timestamp_ms != biggest.timestamp_ms
        ):
            report.bad(
                None, f"checkpoint of size {cp.tree_size} was signed after one of size {biggest.tree_size}"
            )
        if biggest is None or cp.tree_size >= biggest.tree_size:
            biggest = cp


def _check_pin(note: str, key: VerifierKey, tree: TreeLevels, n: int, report: VerifyReport) -> None:
    try:
        pin = open_checkpoint(note, key)
    except NoteError as e:
        report.bad(None, f"pinned checkpoint: {e}")
        return
    if pin.tree_size > n:
        report.bad(n, f"log truncated: you saw a signed tree of {pin.tree_size} entries, the bundle has {n}")
    elif tree.root(pin.tree_size) != pin.root_hash:
        report.bad(
            None,
            f"fork: the bundle's tree at size {pin.tree_size} differs from the checkpoint you pinned "
            "(the server rewrote history or shows different logs to different auditors)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tre.audit.verify BUNDLE [--key VKEY] [--pin NOTE]...``; exit 0 only if valid."""
    ap = argparse.ArgumentParser(description="Verify a tre audit bundle offline.")
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--key", help="trusted verifier key (<name>+<id>+<base64>) or a file holding it")
    ap.add_argument("--pin", action="append", default=[], type=Path, help="a checkpoint note seen earlier")
    args = ap.parse_args(argv)
    key = None
    if args.key:
        text = Path(args.key).read_text() if Path(args.key).is_file() else args.key
        key = VerifierKey.parse(text)
    report = verify_bundle(args.bundle.read_bytes(), key, [p.read_text() for p in args.pin])
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(report.summary())
    for e in report.errors:
        print(f"  - {e}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
