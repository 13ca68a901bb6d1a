"""Round-4 tamper variants on an exported bundle that the other tamper tests do not write:
a duplicated entry (in the middle, at the end), every checkpoint's key id altered, a header
that under-counts its entries. Each must fail with a one-line reason naming the class."""

from __future__ import annotations

import base64
import json

from tests.audit.test_tamper import N, bundle, check  # noqa: F401 - `bundle` is a fixture
from tre.audit.signing import AuditSigner


def _split(data: bytes) -> tuple[dict[str, int], list[bytes], list[bytes]]:
    lines = data.split(b"\n")[:-1]
    header = json.loads(lines[0])
    n = header["tree_size"]
    return header, lines[1 : 1 + n], lines[1 + n :]


def _join(header: dict[str, int], entries: list[bytes], checkpoints: list[bytes]) -> bytes:
    return b"\n".join([json.dumps(header).encode(), *entries, *checkpoints]) + b"\n"


def test_duplicated_middle_entry_is_named(bundle: bytes, signer: AuditSigner) -> None:  # noqa: F811
    header, entries, cps = _split(bundle)
    entries.insert(5, entries[4])
    header["tree_size"] += 1
    ok, bad, why = check(_join(header, entries, cps), signer)
    assert not ok and bad == 5 and "claims index 4" in why, why


def test_duplicated_last_entry_is_named(bundle: bytes, signer: AuditSigner) -> None:  # noqa: F811
    header, entries, cps = _split(bundle)
    entries.append(entries[-1])
    header["tree_size"] += 1
    ok, bad, why = check(_join(header, entries, cps), signer)
    assert not ok and bad == N and "not covered by any signed checkpoint" in why, why


def test_altered_key_id_on_every_checkpoint_fails(bundle: bytes, signer: AuditSigner) -> None:  # noqa: F811
    header, entries, cps = _split(bundle)
    altered = []
    for line in cps:
        obj = json.loads(line)
        body, sigs = obj["checkpoint"].rsplit("\n\n", 1)
        new = []
        for sig in sigs.strip("\n").split("\n"):
            dash, name, b64 = sig.split(" ")
            raw = bytearray(base64.b64decode(b64))
            raw[0] ^= 1  # the first of the four key-hash bytes
            new.append(f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}")
        obj["checkpoint"] = body + "\n\n" + "\n".join(new) + "\n"
        altered.append(json.dumps(obj).encode())
    ok, _, why = check(_join(header, entries, altered), signer)
    assert not ok and "not signed by the trusted key" in why and "no valid signed checkpoint" in why, why


def test_header_that_undercounts_entries_fails(bundle: bytes, signer: AuditSigner) -> None:  # noqa: F811
    header, entries, cps = _split(bundle)
    header["tree_size"] -= 3
    ok, bad, why = check(_join(header, entries, cps), signer)
    assert not ok and bad == N - 3 and "header says" in why, why
