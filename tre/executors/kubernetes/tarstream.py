"""Both ends of the output transfer: pack /output in the collector pod, unpack on the host.

`main` runs inside the collector pod (``python -m tre.executors.kubernetes.tarstream /output``)
and writes an uncompressed tar to stdout, which the executor reads over the exec API. Only
regular files and directories travel: a job must not smuggle links or devices into the
staging area. `extract` is the host side: it re-checks every member, because the pod's
side is under the researcher's control (they wrote what is in /output).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tarfile
from pathlib import Path
from typing import IO


class OutputTooLarge(ValueError):
    """The job's outputs exceed its output limit."""


def pack(root: Path, out: IO[bytes], limit_bytes: int) -> int:
    """Write a tar of the regular files under `root` to `out`; returns the bytes of file data."""
    total = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            base = Path(dirpath)
            for name in sorted(dirnames) + sorted(filenames):
                path = base / name
                st = path.lstat()
                rel = path.relative_to(root).as_posix()
                if stat.S_ISDIR(st.st_mode):
                    info = tarfile.TarInfo(rel)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    if total > limit_bytes:
                        raise OutputTooLarge(f"outputs exceed the limit of {limit_bytes} bytes")
                    info = tarfile.TarInfo(rel)
                    info.size = st.st_size
                    info.mode = 0o644
                    info.mtime = int(st.st_mtime)
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    print(f"skipped non-regular file: {rel}", file=sys.stderr)
    return total


def extract(archive: IO[bytes], dest: Path, limit_bytes: int) -> list[Path]:
    """Unpack a tar from `pack` into `dest`, refusing links, devices, escapes and oversize content."""
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    total = 0
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for member in tar:
            if not (member.isreg() or member.isdir()):
                raise ValueError(f"refusing non-regular archive member {member.name!r}")
            total += member.size
            if total > limit_bytes:
                raise OutputTooLarge(f"outputs exceed the limit of {limit_bytes} bytes")
            # The 'data' filter rejects absolute paths, '..' escapes and odd modes.
            safe = tarfile.data_filter(member, str(dest))
            tar.extract(safe, path=dest, filter="data")
            if member.isreg():
                written.append(dest / safe.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tar of a job's outputs to stdout.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--limit-bytes", type=int, default=256 * 1024 * 1024)
    args = parser.parse_args(argv)
    try:
        pack(args.root, sys.stdout.buffer, args.limit_bytes)
    except OutputTooLarge as exc:
        print(str(exc), file=sys.stderr)
        return 3
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
