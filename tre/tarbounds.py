"""Bounds on what `tarfile` itself reads while walking an archive a user sent.

Checking members by their headers is not enough: before a member is even yielded, tarfile
reads a PAX extended header's or a GNU long name's whole body into memory, and follows a
sparse file's map however long it is. A few hundred KiB of gzip can then hold a 2 GiB
"header" (measured: 400 KiB made an image import allocate 2 GiB). And after the end of
the archive, whatever the compressed stream still holds is decompressed to be hashed.

Two guards, used for image archives, image layers and code archives:

- `BoundedTarInfo` (``tarfile.open(..., tarinfo=BoundedTarInfo)``) refuses a PAX or
  long-name header body over `MAX_HEADER_BYTES` and any sparse member before tarfile reads
  them;
- `CappedReader` counts the bytes read through it (after decompression) and refuses past
  a cap, so the stream a tar walk or a hash consumes is bounded whatever it claims.
"""

from __future__ import annotations

import tarfile
from typing import IO, Any

# Real PAX headers hold a long path, link target, times and a few extended attributes:
# kilobytes. 1 MiB leaves room for large ACLs or SELinux labels and keeps memory bounded.
MAX_HEADER_BYTES = 1 << 20

_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class TarBoundExceeded(Exception):
    """The archive asked tarfile to read more than a bound allows; the message says what."""


class TarHeaderTooLarge(TarBoundExceeded):
    """A PAX or GNU long-name header body over `MAX_HEADER_BYTES`."""


class TarSparseMember(TarBoundExceeded):
    """A sparse member (GNU or PAX 1.0): its map is read unbounded, and nothing here needs one."""


class _HeaderBounds:
    """Header processing that refuses oversized header bodies and sparse files, mixed into a
    `TarInfo` class (the standard library's, or `backports.tarfile`'s: `tre.safetar`).

    Hooks tarfile's (private, but unchanged since Python 2) per-type processing methods:
    the check has to run before tarfile reads the body, which no public hook allows.
    """

    type: bytes
    size: int

    def _proc_member(self, tarfile_: Any) -> Any:
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise TarHeaderTooLarge(
                f"an extended tar header of {self.size} bytes (more than {MAX_HEADER_BYTES >> 20} MiB)"
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]

    def _proc_sparse(self, tarfile_: Any) -> Any:
        raise TarSparseMember("a sparse file")

    def _proc_gnusparse_10(self, next_: Any, pax_headers: Any, tarfile_: Any) -> Any:
        raise TarSparseMember("a sparse file")


def bounded_tarinfo(base: type[tarfile.TarInfo]) -> type[tarfile.TarInfo]:
    """``base`` with the header bounds: pass it as ``tarfile.open(..., tarinfo=...)`` of the
    same module ``base`` comes from (its exceptions are the ones that module catches)."""
    return type("BoundedTarInfo", (_HeaderBounds, base), {})


BoundedTarInfo = bounded_tarinfo(tarfile.TarInfo)


class CappedReader:
    """A read-only stream over ``raw`` that refuses to deliver more than ``cap`` bytes."""

    def __init__(self, raw: IO[bytes] | Any, cap: int, what: str) -> None:
        self.raw = raw
        self.cap = cap
        self.what = what
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        want = size if size is not None and 0 <= size <= 1 << 20 else 1 << 20
        data: bytes = self.raw.read(want)
        self.total += len(data)
        if self.total > self.cap:
            raise TarBoundExceeded(f"{self.what} decompresses to more than {self.cap >> 20} MiB")
        return data

    def close(self) -> None:
        close = getattr(self.raw, "close", None)
        if close is not None:
            close()


def stream_cap(max_bytes: int, max_entries: int) -> int:
    """Decompressed tar bytes a compliant archive may need: its files' data, a header and
    padding per entry (PAX records included), and the end-of-archive record."""
    return max_bytes + 4096 * max_entries + (1 << 20)
