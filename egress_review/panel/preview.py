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

Kind = Literal["dicom", "image", "table", "text", "binary", "nifti", "xlsx", "parquet", "json"]

MAX_PREVIEW_PIXELS = 40_000_000
MAX_RENDER_EDGE = 768
MAX_TABLE_ROWS = 100
TABLE_PAGE_ROWS = 25
MAX_TABLE_COLUMNS = 40
MAX_NIFTI_BYTES = 512 * 1024 * 1024
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
    from egress_review.checks.detect import nifti_version

    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if nifti_version(head) or (head[:2] == b"\x1f\x8b" and name.lower().endswith(".nii.gz")):
        return "nifti"
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:4] == b"PK\x03\x04" and name.lower().endswith(".xlsx"):
        return "xlsx"
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
    if name.lower().endswith(".json"):
        return "json"
    return "text"


@dataclass
class Table:
    """One page of a table: ``first_row`` is the file row number (header = 1) of ``rows[0]``,
    ``first_column`` the 0-based index of ``header[0]`` among all columns."""

    header: list[str]
    rows: list[list[str]]
    truncated: bool
    name: str = ""
    page: int = 0
    pages: int = 1
    first_row: int = 2
    total_rows: int = 0
    hidden_columns: int = 0
    highlights: set[tuple[int, str]] = field(default_factory=set)
    column_page: int = 0
    column_pages: int = 1
    first_column: int = 0
    total_columns: int = 0


@dataclass(frozen=True)
class Focus:
    """Where a reviewer should land in a table: the first cell an SDC rule named."""

    row: int  # file row number, header = 1
    column: str


def focus_of(highlights: set[tuple[int, str]]) -> Focus | None:
    if not highlights:
        return None
    row, column = min(highlights)
    return Focus(row, column)


def _page(
    all_rows: list[list[str]],
    page: int,
    truncated: bool,
    name: str = "",
    total: int | None = None,
    column_page: int | None = None,
    focus: Focus | None = None,
) -> Table:
    """A bounded page of a parsed table: at most TABLE_PAGE_ROWS rows and MAX_TABLE_COLUMNS
    columns, whatever the table's width, so the page's size does not grow with the table.

    ``total`` (data rows) when ``all_rows`` holds only the rows up to the requested page.
    Without an explicit ``column_page``, the columns shown are those holding ``focus``.
    """
    if not all_rows:
        return Table([], [], False, name)
    header, body = all_rows[0], all_rows[1:]
    total = len(body) if total is None else total
    pages = max(1, -(-total // TABLE_PAGE_ROWS))
    page = min(max(page, 0), pages - 1)
    start = page * TABLE_PAGE_ROWS
    shown = body[start : start + TABLE_PAGE_ROWS]
    width = max(len(header), *(len(r) for r in shown), 0)
    column_pages = max(1, -(-width // MAX_TABLE_COLUMNS))
    if column_page is None:
        column_page = 0
        if focus is not None and focus.column in header:
            column_page = header.index(focus.column) // MAX_TABLE_COLUMNS
    column_page = min(max(column_page, 0), column_pages - 1)
    c0 = column_page * MAX_TABLE_COLUMNS
    c1 = c0 + MAX_TABLE_COLUMNS
    return Table(
        header=[h[:MAX_VALUE_CHARS] for h in header[c0:c1]],
        rows=[[c[:MAX_VALUE_CHARS] for c in r[c0:c1]] for r in shown],
        truncated=truncated,
        name=name,
        page=page,
        pages=pages,
        first_row=start + 2,
        total_rows=total,
        hidden_columns=max(0, width - min(c1, width) + c0),
        column_page=column_page,
        column_pages=column_pages,
        first_column=c0,
        total_columns=width,
    )


def focus_page(page: int | None, focus: Focus | None) -> int:
    """The requested row page, or (none asked for) the page holding the focused cell."""
    if page is not None:
        return page
    return max(0, (focus.row - 2) // TABLE_PAGE_ROWS) if focus is not None else 0


def table(
    data: bytes, page: int | None = 0, column_page: int | None = None, focus: Focus | None = None
) -> Table:
    """A delimited text table, paged; only the first MAX_TABLE_BYTES are parsed, and only the
    rows up to the requested page."""
    text = data[:MAX_TABLE_BYTES].decode("utf-8", errors="replace")
    cut = len(data) > MAX_TABLE_BYTES
    if cut and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # the cut last row
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t|", key=first.count)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    page = min(max(focus_page(page, focus), 0), max(0, (len(lines) - 2) // TABLE_PAGE_ROWS))
    wanted = lines[: 1 + (page + 1) * TABLE_PAGE_ROWS]
    rows = list(csv.reader(io.StringIO("\n".join(wanted)), delimiter=delimiter))
    return _page(rows, page, cut, total=max(0, len(lines) - 1), column_page=column_page, focus=focus)


def structured_tables(
    data: bytes, kind: Kind, page: int | None = 0, column_page: int | None = None, focus: Focus | None = None
) -> list[Table]:
    """Tables of a JSON, XLSX or Parquet file, read as the checks read them (first 5)."""
    import json
    import tempfile
    from pathlib import Path

    from egress_review.checks.table_readers import json_tables, read_parquet, read_xlsx

    if kind == "json":
        try:
            doc = json.loads(data)
        except ValueError:
            return []
        found = list(json_tables(doc))[:5]
        focus = focus if len(found) == 1 else None  # cells are named per table only when there is one
        row_page = focus_page(page, focus)
        return [_page(rows, row_page, False, where, None, column_page, focus) for where, rows in found]
    with tempfile.NamedTemporaryFile(suffix="." + kind) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            read = read_xlsx(Path(tmp.name)) if kind == "xlsx" else read_parquet(Path(tmp.name))
        except Exception as exc:  # noqa: BLE001 - any reader failure: no preview
            raise PreviewError(f"the {kind} file cannot be read: {exc}") from exc
    found = list(read.tables.items())[:5]
    focus = focus if len(found) == 1 else None
    row_page = focus_page(page, focus)
    return [_page(rows, row_page, False, where, None, column_page, focus) for where, rows in found]


def highlighted_cells(checks: Iterable[dict[str, Any]]) -> set[tuple[int, str]]:
    """(file row, column name) of every cell an SDC rule named in its evidence."""
    out: set[tuple[int, str]] = set()
    for c in checks:
        if c.get("outcome") not in ("flag", "block") or not str(c.get("check", "")).startswith("sdc"):
            continue
        for cell in (c.get("evidence") or {}).get("cells", []) or []:
            if isinstance(cell, dict) and isinstance(cell.get("row"), int) and "column" in cell:
                out.add((cell["row"], str(cell["column"])))
    return out


MAX_EVIDENCE_CHARS = 6000


def evidence_json(evidence: Any) -> str:
    """A check's evidence as indented JSON, cut at MAX_EVIDENCE_CHARS: a rule that names
    thousands of cells must not make every view of the page megabytes long."""
    import json

    text = json.dumps(evidence, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) <= MAX_EVIDENCE_CHARS:
        return text
    return text[:MAX_EVIDENCE_CHARS] + f"\n… ({len(text) - MAX_EVIDENCE_CHARS} more characters not shown)"


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB': sizes a reviewer reads at a glance."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def render_nifti(data: bytes) -> bytes:
    """The middle axial, coronal and sagittal slices of a NIfTI volume side by side, as a PNG."""
    import gzip
    import zlib

    from egress_review.checks.images import NIFTI_DTYPES, nifti_header

    try:
        if data[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read(MAX_NIFTI_BYTES + 1)
            if len(data) > MAX_NIFTI_BYTES:
                raise PreviewError("the volume inflates to more than the preview limit")
        hdr = nifti_header(data)
        ndim = hdr["dims"][0]
        shape = [int(d) for d in hdr["dims"][1 : ndim + 1]]
        code = NIFTI_DTYPES.get(int(hdr["datatype"]))
        if code is None or not 2 <= ndim <= 4:
            raise PreviewError(f"NIfTI datatype {hdr['datatype']} with {ndim} dimensions cannot be previewed")
        if ndim == 4:
            shape = shape[:3]
        count = int(np.prod(shape))
        if count > MAX_PREVIEW_PIXELS * 4:
            raise PreviewError(f"{count} voxels is too large to preview")
        dtype = np.dtype(code).newbyteorder(hdr["endian"])
        vol = np.frombuffer(data, dtype=dtype, count=count, offset=int(hdr["vox_offset"]))
        vol = vol.reshape(shape[::-1]).T.astype(np.float64)
        if vol.ndim == 2:
            vol = vol[..., None]
        x, y, z = (d // 2 for d in vol.shape)
        views = [vol[:, :, z].T[::-1], vol[:, y, :].T[::-1], vol[x, :, :].T[::-1]]
        lo, hi = np.percentile(vol, 0.5), np.percentile(vol, 99.5)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        edge = 256
        canvas = Image.new("L", (edge * 3 + 8, edge), 0)
        for i, view in enumerate(views):
            img = Image.fromarray(np.clip((view - lo) * scale, 0, 255).astype(np.uint8), mode="L")
            img.thumbnail((edge, edge))
            canvas.paste(img, (i * (edge + 4), (edge - img.height) // 2))
        out = io.BytesIO()
        canvas.save(out, format="PNG")
        return out.getvalue()
    except PreviewError:
        raise
    except (ValueError, OSError, EOFError, zlib.error, IndexError, TypeError) as exc:
        raise PreviewError(f"the NIfTI volume cannot be rendered: {exc}") from exc


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
        return _to_png(_with_overlays(img, ds))
    except PreviewError:
        raise
    except (
        InvalidDicomError,
        AttributeError,
        ValueError,
        TypeError,
        KeyError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise PreviewError(f"the DICOM pixel data cannot be rendered: {exc}") from exc


OVERLAY_COLOUR = (255, 214, 0)


def _with_overlays(img: Image.Image, ds: pydicom.Dataset) -> Image.Image:
    """Overlay planes (60xx,3000) drawn over the image in yellow: viewers show them, so must we."""
    planes = [g for g in range(0x6000, 0x6020, 2) if (g << 16 | 0x3000) in ds]
    if not planes:
        return img
    rgb = img.convert("RGB")
    canvas = np.asarray(rgb).copy()
    for group in planes:
        try:
            mask = np.asarray(ds.overlay_array(group), dtype=bool)
        except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError):
            continue
        if mask.ndim == 3:
            mask = mask[0]
        origin = ds.get((group << 16) | 0x0050)
        r0, c0 = (int(origin.value[0]) - 1, int(origin.value[1]) - 1) if origin is not None else (0, 0)
        h = min(mask.shape[0], canvas.shape[0] - max(r0, 0))
        w = min(mask.shape[1], canvas.shape[1] - max(c0, 0))
        if h > 0 and w > 0:
            region = canvas[max(r0, 0) : max(r0, 0) + h, max(c0, 0) : max(c0, 0) + w]
            region[mask[:h, :w]] = OVERLAY_COLOUR
    return Image.fromarray(canvas, mode="RGB")


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
                out.error = f"only the first {MAX_HEADER_ROWS} header elements are shown; the file holds more"
                return
            tag8 = f"{elem.tag.group:04X}{elem.tag.element:04X}"
            is_flagged = tag8 in flagged or (bool(elem.keyword) and elem.keyword in flagged)
            is_flagged = is_flagged or (elem.tag.is_private and "private" in flagged)
            out.rows.append(
                HeaderRow(
                    tag=f"({elem.tag.group:04X},{elem.tag.element:04X})",
                    keyword=elem.keyword or ("private" if elem.tag.is_private else ""),
                    vr=str(elem.VR),
                    value="" if elem.VR == "SQ" else _value_text(elem),
                    depth=depth,
                    flagged=is_flagged,
                )
            )
            out.flagged_count += int(is_flagged)
            if elem.VR == "SQ" and depth < 3:
                for item in elem.value:
                    add(item, depth + 1)

    if getattr(ds, "file_meta", None):
        add(ds.file_meta, 0)
    add(ds, 0)
    return out
