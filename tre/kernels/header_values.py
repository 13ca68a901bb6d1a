"""Header values read from the raw element bytes where they are plain, else through pydicom.

Why: pydicom's conversion of an element (its hooks, DSfloat validation) costs ~40 us, and a
slice header needs about ten of them, more than the parse itself; an enhanced multi-frame
header needs a few per frame. Decimal strings and 16-bit integers as scanners write them are
parsed here from the undecoded bytes; any value that does not parse goes through pydicom's
conversion, so the result never differs from pydicom's except in speed.
"""

from __future__ import annotations

from functools import cache

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset


@cache
def _tag_of(keyword: str) -> int:
    return int(tag_for_keyword(keyword) or 0)


def raw_bytes(ds: Dataset, keyword: str) -> tuple[bytes, bool] | None:
    """The element's undecoded value and byte order, or None (absent or already decoded)."""
    elem = ds.get_item(_tag_of(keyword))
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        return elem.value, bool(elem.is_little_endian)
    return None


def float_tuple(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    """``n`` numbers of a DS/IS element, or None when missing or malformed."""
    raw = raw_bytes(ds, keyword)
    if raw is not None:
        try:
            parts = tuple(float(v) for v in raw[0].split(b"\\"))
            return parts if len(parts) == n else None
        except ValueError:
            pass  # padding or characters pydicom copes with: let it convert
    value = ds.get(keyword)
    try:
        if value is None or len(value) != n:
            return None
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None


def number(ds: Dataset, keyword: str, default: float) -> float | None:
    """A single DS/IS value (``default`` when absent or empty), or None when malformed."""
    raw = raw_bytes(ds, keyword)
    if raw is not None and b"\\" not in raw[0]:
        text = raw[0].strip(b" ")
        if not text:
            return default
        try:
            return float(text)
        except ValueError:
            pass
    try:
        return float(ds.get(keyword, default) or default)
    except (TypeError, ValueError):
        return None


def uint(ds: Dataset, keyword: str, default: int) -> int:
    """A US element's value (``default`` when absent or zero, as the loader always treated it)."""
    raw = raw_bytes(ds, keyword)
    if raw is not None and len(raw[0]) == 2:
        return int.from_bytes(raw[0], "little" if raw[1] else "big") or default
    return int(ds.get(keyword, default) or default)


def text(ds: Dataset, keyword: str) -> str:
    """A one-word code string (CS) element's value as pydicom gives it (``""`` when absent):
    from the raw bytes when, without the trailing spaces and NULs pydicom strips, they are
    ASCII letters, digits and ``_`` only; anything else through pydicom's conversion."""
    raw = raw_bytes(ds, keyword)
    if raw is not None:
        value = raw[0].rstrip(b"\0 ")
        if value.isascii() and value.replace(b"_", b"").isalnum():
            return value.decode("ascii")
    return str(ds.get(keyword, "") or "")
