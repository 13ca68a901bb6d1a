"""Turning staged bytes into something a reviewer can look at safely in a browser.

Nothing a researcher wrote is ever sent to the browser as-is: tables become escaped HTML
cells, images are decoded and re-encoded as PNG (so a polyglot or script-carrying file cannot
reach the browser in its original form), DICOM becomes a windowed PNG of one slice plus a
header table. Kinds are told from the bytes, not the file name.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError

Kind = Literal["dicom", "image", "table", "text", "binary"]

MAX_PREVIEW_PIXELS = 40_000_000
MAX_RENDER_EDGE = 768
MAX_TABLE_ROWS = 100
MAX_TABLE_BYTES = 1 << 20
MAX_TEXT_CHARS = 8000
MAX_VALUE_CHARS = 160
# A DICOM file written by research code can hold millions of tiny elements; every reviewer
# page view would build (and the browser render) a row for each.
MAX_HEADER_ROWS = 2000
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_TAG_RE = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?")


class PreviewError(Exception):
    """The file cannot be rendered; the message says why, for the reviewer."""


def sniff(head: bytes, name: str) -> Kind:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The head may end inside a multi-byte character; one more try without the tail.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return "binary"
    if "\x00" in text:
        return "binary"
    if name.lower().endswith((".csv", ".tsv")):
        return "table"
    return "text"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    truncated: bool


def table(data: bytes) -> Table:
    text = data[:MAX_TABLE_BYTES].decode("utf-8", errors="replace")
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows: list[list[str]] = []
    truncated = len(data) > MAX_TABLE_BYTES
    for i, row in enumerate(reader):
        if i > MAX_TABLE_ROWS:
            truncated = True
            break
        rows.append([c[:MAX_VALUE_CHARS] for c in row])
    if not rows:
        return Table([], [], False)
    return Table(rows[0], rows[1:], truncated)


def text_excerpt(data: bytes) -> tuple[str, bool]:
    """The first MAX_TEXT_CHARS characters; only the bytes that can hold them are decoded
    (a UTF-8 character is at most 4 bytes), so a huge log costs no more than a small one."""
    head = data[: MAX_TEXT_CHARS * 4]
    text = head.decode("utf-8", errors="replace")
    return text[:MAX_TEXT_CHARS], len(text) > MAX_TEXT_CHARS or len(data) > len(head)


def _to_png(img: Image.Image) -> bytes:
    img.thumbnail((MAX_RENDER_EDGE, MAX_RENDER_EDGE))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def render_image(data: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > MAX_PREVIEW_PIXELS:
                raise PreviewError(f"{w}x{h} pixels is too large to preview")
            img.seek(0)
            frame = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
            return _to_png(frame)
    except PreviewError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "cannot preview"
        raise PreviewError(f"the image cannot be decoded: {exc}") from exc


def _window(arr: np.ndarray[Any, Any], ds: pydicom.Dataset) -> np.ndarray[Any, Any]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    pixels = apply_modality_lut(arr, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        pixels = apply_voi_lut(pixels, ds)
    pixels = pixels.astype(np.float64)
    lo, hi = float(np.min(pixels)), float(np.max(pixels))
    scaled = np.zeros_like(pixels) if hi <= lo else (pixels - lo) / (hi - lo) * 255.0
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 255.0 - scaled
    return scaled.astype(np.uint8)


def render_dicom(data: bytes) -> bytes:
    """The middle frame of the pixel data, windowed as the file asks, as a PNG."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in ds:
            raise PreviewError("the DICOM file has no pixel data")
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if rows * cols * frames > MAX_PREVIEW_PIXELS:
            raise PreviewError(f"{frames}x{rows}x{cols} pixels is too large to preview")
        arr = ds.pixel_array
        samples = int(ds.get("SamplesPerPixel", 1))
        if frames > 1:
            arr = arr[frames // 2]
        if samples == 1:
            img = Image.fromarray(_window(arr, ds), mode="L")
        else:
            img = Image.fromarray(np.asarray(arr, dtype=np.uint8)).convert("RGB")
        return _to_png(img)
    except PreviewError:
        raise
    except (InvalidDicomError, AttributeError, ValueError, TypeError, KeyError, RuntimeError,
            NotImplementedError) as exc:
        raise PreviewError(f"the DICOM pixel data cannot be rendered: {exc}") from exc


@dataclass
class HeaderRow:
    tag: str
    keyword: str
    vr: str
    value: str
    depth: int
    flagged: bool


@dataclass
class DicomHeader:
    rows: list[HeaderRow] = field(default_factory=list)
    flagged_count: int = 0
    error: str | None = None


def flagged_keys(checks: Iterable[dict[str, Any]]) -> set[str]:
    """Keywords and tags (as 8 upper-case hex digits) named in the evidence of non-passing checks."""
    keys: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list | tuple | set):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            m = _TAG_RE.fullmatch(value.strip())
            if m:
                keys.add((m.group(1) + m.group(2)).upper())
            elif value.isidentifier():
                keys.add(value)

    for c in checks:
        if c.get("outcome") in ("flag", "block"):
            walk(c.get("evidence", {}))
    return keys


def _value_text(elem: pydicom.DataElement) -> str:
    if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        length = len(elem.value) if isinstance(elem.value, bytes | bytearray) else 0
        return f"<{length} bytes>"
    text = str(elem.value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def dicom_header(data: bytes, flagged: set[str]) -> DicomHeader:
    """Every element except pixel data, nested sequences indented, flagged ones marked."""
    out = DicomHeader()
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, TypeError, KeyError, AttributeError) as exc:
        out.error = f"the DICOM header cannot be read: {exc}"
        return out

    def add(dataset: pydicom.Dataset, depth: int) -> None:
        for elem in dataset:
            if len(out.rows) >= MAX_HEADER_ROWS:
                out.error = (f"only the first {MAX_HEADER_ROWS} header elements are shown; "
                             "the file holds more")
                return
            tag8 = f"{elem.tag.group:04X}{elem.tag.element:04X}"
            is_flagged = tag8 in flagged or (bool(elem.keyword) and elem.keyword in flagged)
            is_flagged = is_flagged or (elem.tag.is_private and "private" in flagged)
            out.rows.append(HeaderRow(
                tag=f"({elem.tag.group:04X},{elem.tag.element:04X})",
                keyword=elem.keyword or ("private" if elem.tag.is_private else ""),
                vr=str(elem.VR), value="" if elem.VR == "SQ" else _value_text(elem),
                depth=depth, flagged=is_flagged,
            ))
            out.flagged_count += int(is_flagged)
            if elem.VR == "SQ" and depth < 3:
                for item in elem.value:
                    add(item, depth + 1)

    if getattr(ds, "file_meta", None):
        add(ds.file_meta, 0)
    add(ds, 0)
    return out
