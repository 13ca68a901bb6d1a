"""The collector's side of the output transfer: write a tar of /output to stdout.

This file is sent **as source text** to the collector container and run there with
``python3 -I -S -c <this file> /output``: isolated mode (no PYTHON* variables, no user site,
and, with ``-P`` implied, neither the working directory nor a script directory on
``sys.path``), no ``site`` import, working directory ``/``. Nothing on ``sys.path`` is
writable by the job, so a job that plants ``/output/tre/__init__.py``, ``tarfile.py`` or
``sitecustomize.py`` only ships those files as data. For the same reason this module may
import the standard library only (a test checks it) and the collector image needs nothing
but a Python interpreter (no ``tre`` package).

Exit codes are the whole vocabulary the host trusts: 0 packed, 3 over the size limit,
4 too many entries or a path too long. Nothing job-controlled (file names) is written to
stderr, so nothing the job chose can reach an error message.
"""

from __future__ import annotations

import os
import stat
import sys
import tarfile

EXIT_TOO_LARGE = 3
EXIT_TOO_MANY = 4
MAX_ENTRIES = 50_000
MAX_PATH_BYTES = 1024


class OutputTooLarge(ValueError):
    """The job's outputs exceed its output limit."""


class OutputTooComplex(ValueError):
    """Too many entries, or a path too long for the transfer's header cap."""


def pack(root: str, out: object, limit_bytes: int) -> int:
    """Write a ustar/PAX tar of the regular files and directories under `root` to `out`.

    Returns the bytes of file data. Links, devices, sockets and FIFOs are skipped (a job
    must not smuggle them into the staging area); their count goes to stderr, not names.
    """
    total = 0
    entries = 0
    skipped = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                    skipped += 1
                    continue
                entries += 1
                if entries > MAX_ENTRIES or len(rel.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
                    raise OutputTooComplex("too many entries or a path too long")
                info = tarfile.TarInfo(rel)
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                    continue
                total += st.st_size
                if total > limit_bytes:
                    raise OutputTooLarge(f"outputs exceed the limit of {limit_bytes} bytes")
                info.size = st.st_size
                info.mode = 0o644
                info.mtime = int(st.st_mtime)
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
    if skipped:
        files = "file" if skipped == 1 else "files"  # standard library only (above)
        print(f"skipped {skipped} non-regular {files}", file=sys.stderr)
    return total


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = args[0] if args else "/output"
    limit = int(args[args.index("--limit-bytes") + 1]) if "--limit-bytes" in args else 256 * 1024 * 1024
    try:
        pack(root, sys.stdout.buffer, limit)
    except OutputTooLarge:
        return EXIT_TOO_LARGE
    except OutputTooComplex:
        return EXIT_TOO_MANY
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
