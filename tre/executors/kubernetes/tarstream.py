"""The host's side of the output transfer: check, then unpack, the tar the collector sent.

The collector (`packer`, run isolated in the collector pod) writes an uncompressed tar of
/output. Its content is under the researcher's control (they chose every name and byte),
and the stream may have been cut, so the host trusts nothing in it:

- `check_archive` walks the raw 512-byte headers on the spooled file before `tarfile`
  parses anything: every header's checksum, PAX/GNU long-name headers capped (tarfile would
  read them whole into memory), the member count capped, and the end-of-archive block
  required (a stream cut at a member boundary otherwise reads as a complete, shorter tar);
- `extract` then accepts only regular files and directories, applies Python's ``data``
  extraction filter (no absolute paths, no ``..``, no links or devices) and enforces the
  output limit again.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from tre.executors.kubernetes.packer import MAX_ENTRIES, OutputTooComplex, OutputTooLarge, pack
from tre.safetar import tarfile

__all__ = ["OutputTooComplex", "OutputTooLarge", "TruncatedArchive", "check_archive", "extract", "pack"]

BLOCK = 512
# A PAX record for one path of at most packer.MAX_PATH_BYTES, with room to spare.
MAX_HEADER_BYTES = 64 * 1024
_META_TYPES = {
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
}


class TruncatedArchive(ValueError):
    """The archive is cut short or malformed: its content must not be trusted."""


def _pax_size(data: bytes) -> int | None:
    """The ``size`` record of a PAX header, which overrides the next member's ustar size."""
    pos = 0
    size: int | None = None
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError as exc:
            raise TruncatedArchive("malformed PAX header") from exc
        if length <= 0:
            raise TruncatedArchive("malformed PAX header")
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        if key == b"size":
            try:
                size = int(value)
            except ValueError as exc:
                raise TruncatedArchive("malformed PAX size") from exc
        pos += length
    return size


def check_archive(fh: IO[bytes], max_entries: int = MAX_ENTRIES + 1000) -> int:
    """Validate the header chain of a seekable tar; returns the member count.

    Raises `TruncatedArchive` if a header is corrupt, a member runs past the end of the
    file, or the end-of-archive block is missing; `OutputTooComplex` for too many members
    or an oversized long-name header.
    """
    end = fh.seek(0, 2)
    pos = 0
    members = 0
    override: int | None = None
    while True:
        if pos + BLOCK > end:
            raise TruncatedArchive("the archive ends without its end-of-archive block")
        fh.seek(pos)
        block = fh.read(BLOCK)
        if block == bytes(BLOCK):
            fh.seek(0)
            return members
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise TruncatedArchive(f"corrupt tar header at byte {pos}") from exc
        size = info.size
        if info.type in _META_TYPES:
            if size > MAX_HEADER_BYTES:
                raise OutputTooComplex(f"a tar extended header of {size} bytes exceeds {MAX_HEADER_BYTES}")
            if pos + BLOCK + size > end:
                raise TruncatedArchive("the archive ends inside an extended header")
            if info.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
                override = _pax_size(fh.read(size))
        else:
            members += 1
            if members > max_entries:
                raise OutputTooComplex(f"the archive has more than {max_entries} entries")
            if override is not None:
                size = override
            override = None
        pos += BLOCK + -(-size // BLOCK) * BLOCK
        if pos > end:
            raise TruncatedArchive("the archive ends inside a file")


def extract(archive: IO[bytes], dest: Path, limit_bytes: int) -> list[Path]:
    """Unpack a tar from `packer` into `dest`, refusing links, devices, escapes, oversize content.

    A seekable `archive` is checked with `check_archive` first. On any error `dest` may hold
    part of the content: callers extract into a staging directory and discard it on error.
    """
    if archive.seekable():
        check_archive(archive)
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
            tar.members = []  # type: ignore[attr-defined]  # stream mode keeps every TarInfo: bounded memory
    return written
