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

And for archives a Go tool reads after us (image layers: umoci; image archives: skopeo),
`StrictTarInfo` also refuses every header Go's archive/tar would read differently, so that
what we checked is what gets unpacked (docs/images.md, "One archive to both readers").
"""

from __future__ import annotations

import re
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

    def _apply_pax_info(self, pax_headers: Any, encoding: Any, errors: Any) -> Any:
        # Every GNU.sparse.* record, not only the ones tarfile acts on: format 0.0 and 0.1
        # sparse members (tarfile reads their map, then yields an ordinary-looking file) and
        # GNU.sparse.name, which tarfile applies as the member's name always and Go's
        # archive/tar only for a sparse member (review round 12).
        if any(str(key).startswith("GNU.sparse.") for key in pax_headers):
            raise TarSparseMember("a sparse file (GNU.sparse records)")
        return super()._apply_pax_info(pax_headers, encoding, errors)  # type: ignore[misc]


def bounded_tarinfo(base: type[tarfile.TarInfo]) -> type[tarfile.TarInfo]:
    """``base`` with the header bounds: pass it as ``tarfile.open(..., tarinfo=...)`` of the
    same module ``base`` comes from (its exceptions are the ones that module catches)."""
    return type("BoundedTarInfo", (_HeaderBounds, base), {})


BoundedTarInfo = bounded_tarinfo(tarfile.TarInfo)


class TarAmbiguousHeader(TarBoundExceeded):
    """A header that Go's archive/tar (umoci, skopeo) would read differently from tarfile."""


# The numeric fields of a tar header: (start, end, name).
_NUMERIC_FIELDS = (
    (100, 108, "mode"),
    (108, 116, "uid"),
    (116, 124, "gid"),
    (124, 136, "size"),
    (136, 148, "mtime"),
    (148, 156, "checksum"),
    (329, 337, "devmajor"),
    (337, 345, "devminor"),
)
# Octal digits, padded with spaces before and spaces or NULs after: the only spelling both
# readers parse to the same number. tarfile stops at the first NUL, Go's archive/tar first
# trims NULs and spaces from both ends: a size field "\0000001000" is 0 to tarfile and 512 to Go.
_CANONICAL_OCTAL = re.compile(rb" *[0-7]*[ \x00]*")
_PAX_DIGITS = re.compile(r"[0-9]+")
# What a global PAX header may set: `git archive` writes the commit id as a comment.
_GLOBAL_PAX_KEYS = {"comment"}


def _check_block(buf: bytes) -> None:
    for start, end, name in _NUMERIC_FIELDS:
        field = buf[start:end]
        if field[0] in (0o200, 0o377):  # base-256, read alike by both
            continue
        if not _CANONICAL_OCTAL.fullmatch(field):
            raise TarAmbiguousHeader(f"a tar header whose {name} field tar readers disagree on")
    kind = buf[156:157]
    if kind == tarfile.AREGTYPE:
        # tarfile makes it a folder if the header's own name ends in "/", Go if the final
        # name (after a PAX path or GNU long name) does: one skips the data, the other not.
        raise TarAmbiguousHeader("an old-style (V7) file header, which tar readers disagree on")
    if kind == tarfile.SOLARIS_XHDTYPE:
        raise TarAmbiguousHeader("a Solaris extended header, which Go's tar reader does not know")
    prefix_used = buf[345] != 0 and kind not in tarfile.GNU_TYPES
    if prefix_used and (buf[257:263] != b"ustar\x00" or buf[508:512] == b"tar\x00"):
        # tarfile joins the prefix field to the name in every format; Go only in POSIX ustar.
        raise TarAmbiguousHeader("a tar header with a name prefix outside the POSIX ustar format")


class _StrictHeaders(_HeaderBounds):
    """Header reading that refuses what Go's archive/tar would read differently.

    An image layer is checked by tarfile here and then unpacked by umoci (Go). Where the two
    parsers disagree on a header, they disagree on where the next one starts, and everything
    after that is a different archive to each: a layer whose size field began with a NUL
    showed tarfile two harmless files while umoci unpacked a 256 MiB sparse file (written
    out in full) that no check had seen (review round 12). So every header must be spelled
    the one way both read alike: canonical numeric fields, no V7 regular-file type, no name
    prefix outside ustar, no Solaris or non-comment global PAX headers, at most one PAX
    header and one GNU long name and link per member and not both a PAX path and a GNU long
    name (each reader lets a different one win), PAX numbers in plain digits.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> Any:
        # tarfile first: it refuses what is not a tar header at all (bad checksum, end of
        # archive) with its own errors, which callers report as "not a readable tar".
        obj = super().frombuf(buf, encoding, errors)  # type: ignore[misc]
        _check_block(buf)
        if obj.size < 0:
            raise TarAmbiguousHeader("a tar header with a negative size")
        return obj

    def _proc_pax(self, tarfile_: Any) -> Any:
        nxt = super()._proc_pax(tarfile_)  # type: ignore[misc]
        if self.type == tarfile.XGLTYPE:
            if set(tarfile_.pax_headers) - _GLOBAL_PAX_KEYS:
                raise TarAmbiguousHeader("a global PAX header (Go's tar reader does not apply it)")
            return nxt
        return _mark(nxt, "pax")

    def _proc_gnulong(self, tarfile_: Any) -> Any:
        nxt = super()._proc_gnulong(tarfile_)  # type: ignore[misc]
        return _mark(nxt, "longname" if self.type == tarfile.GNUTYPE_LONGNAME else "longlink")

    def _apply_pax_info(self, pax_headers: Any, encoding: Any, errors: Any) -> Any:
        for key in ("size", "uid", "gid"):
            if key in pax_headers and not _PAX_DIGITS.fullmatch(str(pax_headers[key])):
                raise TarAmbiguousHeader(f"a PAX {key} record that is not a plain number")
        return super()._apply_pax_info(pax_headers, encoding, errors)


def _mark(member: Any, kind: str) -> Any:
    seen: set[str] = getattr(member, "_tre_extended", set())
    if kind in seen:
        raise TarAmbiguousHeader("two extended headers of one kind for one member")
    seen = seen | {kind}
    member._tre_extended = seen
    pax = member.pax_headers
    if ("longname" in seen and "path" in pax) or ("longlink" in seen and "linkpath" in pax):
        raise TarAmbiguousHeader("both a PAX path and a GNU long name for one member")
    return member


def strict_tarinfo(base: type[tarfile.TarInfo]) -> type[tarfile.TarInfo]:
    """``base`` with the header bounds and the strict header reading of `_StrictHeaders`."""
    return type("StrictTarInfo", (_StrictHeaders, base), {})


# For archives a Go tool reads after us: image layers (umoci) and image archives (skopeo).
StrictTarInfo = strict_tarinfo(tarfile.TarInfo)


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
