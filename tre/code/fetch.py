"""Unpack one code archive by hash: what a Kubernetes job pod's init container runs.

``python -m tre.code.fetch --sha256 H --archive FILE --into DIR --max-mb N`` re-hashes the
archive the pod was given (a read-only file of the control plane's code store, mounted by
subPath so the pod sees no other archive), refuses it unless the SHA-256 is the one the job
was admitted with, and unpacks it with the same checks as the control plane into DIR (an
emptyDir with a sizeLimit, mounted read-only at /code in the job container). Any failure is
one line on stderr and exit status 1, which Kubernetes reports as the pod's failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tre.code.archive import MIB, CodeLimits, unpack
from tre.code.store import check_sha256, sha256_file
from tre.errors import TreError


def fetch(sha256: str, archive: Path, into: Path, max_mb: int) -> int:
    """Verify and unpack; returns the number of entries unpacked."""
    check_sha256(sha256)
    actual = sha256_file(archive)
    if actual != sha256:
        raise TreError(f"the code archive's SHA-256 is {actual}, not {sha256}: refusing to run it")
    manifest = unpack(archive, into, CodeLimits(max_bytes=max_mb * MIB, max_entries=1_000_000))
    return manifest.entry_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tre.code.fetch", description=__doc__)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--archive", required=True, type=Path)
    parser.add_argument("--into", required=True, type=Path)
    parser.add_argument("--max-mb", required=True, type=int)
    args = parser.parse_args(argv)
    try:
        count = fetch(args.sha256, args.archive, args.into, args.max_mb)
    except (TreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"unpacked {count} entries of code {args.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
