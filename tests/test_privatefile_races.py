"""Key files that several processes create at first start: a late starter must never read a
half-written file (the CI once saw the audit origin read empty and called the log's key damaged).

Each creator is raced by threads released together, many rounds over, in fresh folders; with the
old create-then-write code these rounds saw empty or partial files."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tre import privatefile
from tre.audit.signing import load_or_create_signer
from tre.audit.witness_server import load_or_create_key as load_or_create_witness_key
from tre.auth.keys import load_or_create_ed25519, load_or_create_fernet_key, load_or_create_secret

ROUNDS = 60
RACERS = 8


def _race(make: Callable[[Path], object], root: Path) -> None:
    for r in range(ROUNDS):
        folder = root / str(r)
        barrier = threading.Barrier(RACERS)
        results: list[object] = []
        errors: list[BaseException] = []

        def racer() -> None:
            barrier.wait()
            try:
                results.append(make(folder))
            except BaseException as e:  # noqa: BLE001 - recorded and reported below
                errors.append(e)

        threads = [threading.Thread(target=racer) for _ in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"round {r}: {errors[0]!r}"
        assert len(set(map(repr, results))) == 1, f"round {r}: racers disagree on the key"


def _pub(key: object) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[attr-defined]


CREATORS: dict[str, Callable[[Path], object]] = {
    "audit signer": lambda d: (load_or_create_signer(d).public_key, load_or_create_signer(d).name),
    "jwt ed25519": lambda d: _pub(load_or_create_ed25519(d / "k.pem")),
    "fernet": lambda d: load_or_create_fernet_key(d / "f.key"),
    "mac secret": lambda d: load_or_create_secret(d / "s.key"),
    "witness": lambda d: _pub(load_or_create_witness_key(d / "w.pem")),
}


@pytest.mark.parametrize("name", sorted(CREATORS))
def test_racing_first_starts_agree_and_never_read_a_partial_file(name: str, tmp_path: Path) -> None:
    _race(CREATORS[name], tmp_path)


def test_create_once_keeps_the_first_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "key"
    assert privatefile.create_once(target, b"first")
    assert not privatefile.create_once(target, b"second")
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o600
    privatefile.replace(target, b"third")
    assert target.read_bytes() == b"third"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]
