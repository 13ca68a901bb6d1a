"""Where hidden payloads live: format end markers, ancillary chunks and embedded signatures.

A viewer shows a PNG and ignores what follows IEND; ``unzip`` finds a ZIP at the end of any
file. So a file that opens as a harmless plot can carry the raw data out. This module walks
PNG chunks and JPEG segments to find where the format really ends, and scans bytes for other
formats' signatures. Signatures that are long or validated (a ZIP local header with a sane
method and file name; 7z, RAR, xz, PDF, ELF, PNG) are searched everywhere; short ones (gzip,
JPEG, DICOM preamble) only in regions that should not hold them (trailing bytes, metadata), so
that compressed image data does not trigger them by chance.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import numpy as np

MAX_HITS = 20


@dataclass
class Structure:
    """Where a format's own data ends, its parts, and regions that are not image data."""

    ok: bool
    end: int
    parts: list[str] = field(default_factory=list)
    side_regions: list[tuple[str, int, int]] = field(default_factory=list)
    error: str = ""


PNG_STANDARD_CHUNKS = frozenset(
    {
        b"IHDR",
        b"PLTE",
        b"IDAT",
        b"IEND",
        b"tRNS",
        b"cHRM",
        b"gAMA",
        b"iCCP",
        b"sBIT",
        b"sRGB",
        b"cICP",
        b"mDCv",
        b"cLLi",
        b"tEXt",
        b"zTXt",
        b"iTXt",
        b"bKGD",
        b"hIST",
        b"pHYs",
        b"sPLT",
        b"eXIf",
        b"tIME",
        b"acTL",
        b"fcTL",
        b"fdAT",
    }
)
PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"})


def png_structure(data: bytes) -> Structure:
    """Walk PNG chunks to IEND; every non-pixel chunk payload becomes a side region."""
    pos = 8
    parts: list[str] = []
    side: list[tuple[str, int, int]] = []
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        start, end = pos + 8, pos + 8 + length
        if end + 4 > len(data):
            return Structure(False, len(data), parts, side, f"chunk {ctype!r} runs past the end of the file")
        name = ctype.decode("latin-1")
        parts.append(name)
        if ctype not in (b"IDAT", b"IHDR", b"PLTE", b"IEND", b"fdAT"):
            side.append((f"chunk {name}", start, end))
        pos = end + 4
        if ctype == b"IEND":
            return Structure(True, pos, parts, side)
    return Structure(False, len(data), parts, side, "no IEND chunk")


def jpeg_structure(data: bytes) -> Structure:
    """Walk JPEG marker segments and entropy-coded data to EOI; APPn/COM payloads are side regions."""
    if not data.startswith(b"\xff\xd8"):
        return Structure(False, 0, error="no SOI marker")
    pos = 2
    parts: list[str] = ["SOI"]
    side: list[tuple[str, int, int]] = []
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            return Structure(False, n, parts, side, f"expected a marker at offset {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            parts.append("EOI")
            return Structure(True, pos, parts, side)
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            continue
        if pos + 2 > n:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        seg_start, seg_end = pos + 2, pos + length
        if length < 2 or seg_end > n:
            return Structure(False, n, parts, side, f"segment FF{marker:02X} runs past the end of the file")
        label = (
            f"APP{marker - 0xE0}"
            if 0xE0 <= marker <= 0xEF
            else ("COM" if marker == 0xFE else f"FF{marker:02X}")
        )
        parts.append(label)
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            side.append((f"segment {label}", seg_start, seg_end))
        pos = seg_end
        if marker == 0xDA:  # start of scan: skip entropy-coded data to the next real marker
            while pos + 1 < n:
                if data[pos] == 0xFF and data[pos + 1] != 0x00 and not 0xD0 <= data[pos + 1] <= 0xD7:
                    break
                pos += 1
            else:
                pos = n
    return Structure(False, n, parts, side, "no EOI marker")


def _zip_local_ok(data: bytes, off: int) -> bool:
    if off + 30 > len(data):
        return False
    version, _flags, method = struct.unpack("<HHH", data[off + 4 : off + 10])
    name_len, _extra = struct.unpack("<HH", data[off + 26 : off + 30])
    if version > 100 or method not in (0, 1, 6, 8, 9, 12, 14, 19, 93, 95, 98, 99) or not 0 < name_len <= 1024:
        return False
    name = data[off + 30 : off + 30 + name_len]
    return len(name) == name_len and all(32 <= b < 127 or b >= 128 for b in name)


def _zip_eocd_ok(data: bytes, off: int) -> bool:
    if off + 22 > len(data):
        return False
    disk, cd_disk, n_here, n_total = struct.unpack("<HHHH", data[off + 4 : off + 12])
    return disk == cd_disk == 0 and n_here == n_total


# name, regex, validator or None, strong (searched everywhere) or weak (side regions only)
_SIGNATURES: list[tuple[str, bytes, object, bool]] = [
    ("zip", b"PK\x03\x04", _zip_local_ok, True),
    ("zip end-of-central-directory", b"PK\x05\x06", _zip_eocd_ok, True),
    ("7z", b"7z\xbc\xaf\x27\x1c", None, True),
    ("rar", b"Rar!\x1a\x07", None, True),
    ("xz", b"\xfd7zXZ\x00", None, True),
    ("pdf", b"%PDF-1.", None, True),
    ("elf", b"\x7fELF[\x01\x02][\x01\x02]\x01", None, True),
    ("png", b"\x89PNG\r\n\x1a\n", None, True),
    ("gzip", b"\x1f\x8b\x08", None, False),
    ("jpeg", b"\xff\xd8\xff[\xdb\xe0\xe1\xee]", None, False),
    ("bzip2", b"BZh[1-9]1AY&SY", None, True),
    ("zstd", b"\x28\xb5\x2f\xfd", None, False),
    ("dicom", b"DICM", None, False),
    ("ustar", b"ustar[\x00 ]", None, False),
]
_COMPILED = [
    (name, re.compile(re.escape(sig) if b"[" not in sig else sig), val, strong)
    for name, sig, val, strong in _SIGNATURES
]


def find_signatures(
    data: bytes, start: int = 0, end: int | None = None, *, strong_only: bool
) -> list[dict[str, object]]:
    """Offsets of other formats' signatures in ``data[start:end]`` (at most MAX_HITS)."""
    end = len(data) if end is None else end
    hits: list[dict[str, object]] = []
    view = data[start:end]
    for name, pattern, validator, strong in _COMPILED:
        if strong_only and not strong:
            continue
        for m in pattern.finditer(view):
            off = start + m.start()
            if callable(validator) and not validator(data, off):
                continue
            if name == "dicom" and off - start < 128:
                continue  # a DICOM file has 128 preamble bytes before DICM
            hits.append({"format": name, "offset": off})
            if len(hits) >= MAX_HITS:
                return hits
    return sorted(hits, key=lambda h: int(str(h["offset"])))


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte (8.0 = indistinguishable from random/encrypted)."""
    if not data:
        return 0.0
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(np.float64)
    p = counts[counts > 0] / len(data)
    return float(-(p * np.log2(p)).sum())
