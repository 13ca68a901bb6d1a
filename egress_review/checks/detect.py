"""What a file really is, from its bytes: the extension is the researcher's claim, not evidence.

Binary formats are recognised by their magic numbers (checked structurally where a short
magic would be ambiguous, e.g. NIfTI's header size and magic together); text is recognised by
decoding it and then sniffing JSON and delimited tables. ``puremagic`` supplies a description
for anything unrecognised, for the reviewer's benefit only: an unrecognised file is "binary"
and binary is not on any default allowlist.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import puremagic

TEXT_SAMPLE_BYTES = 1024 * 1024
ARCHIVE_TYPES = frozenset({"zip", "gzip", "bzip2", "xz", "7z", "rar", "tar", "zstd"})
TEXT_TYPES = frozenset({"text", "csv", "tsv", "json"})
IMAGE_TYPES = frozenset({"png", "jpeg", "gif", "tiff", "bmp", "webp"})
TABLE_TYPES = frozenset({"csv", "tsv", "xlsx", "parquet", "arrow"})
JSON_FULL_READ_BYTES = 64 * 1024 * 1024

# Extension -> the content type it promises. Longest suffix first (.nii.gz before .gz).
EXTENSIONS: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".gif": "gif",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".webp": "webp",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".pdf": "pdf",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".xlsx": "xlsx",
    ".parquet": "parquet",
    ".pq": "parquet",
    # Arrow IPC: Feather v2 files and streams (leaks12), read as Parquet is
    ".feather": "arrow",
    ".arrow": "arrow",
    ".arrows": "arrow",
    ".ipc": "arrow",
    ".pkl": "model",
    ".pickle": "model",
    ".pt": "model",
    ".pth": "model",
    ".ckpt": "model",
    ".safetensors": "model",
    ".onnx": "model",
    ".npz": "model",
    ".npy": "model",
    ".joblib": "model",
    ".txt": "text",
    ".log": "text",
    ".md": "text",
    # configuration and markup: searched as text, their tables read (runner._yaml_tables,
    # checks/markup_tables.py), so a results.yaml is not flagged for its name (redteam9)
    ".yaml": "text",
    ".yml": "text",
    ".xml": "text",
    ".toml": "text",
    ".ini": "text",
    ".cfg": "text",
    ".tex": "text",
    ".sha256": "text",
    ".md5": "text",
    # HTML reports (their tables read, checks/text_tables.py) and Java-style properties
    # (their `key = value` counts read, checks/text_counts.py): leaks10
    ".html": "text",
    ".htm": "text",
    ".properties": "text",
    # reStructuredText, AsciiDoc and org-mode documents: their tables are read (leaks11)
    ".rst": "text",
    ".adoc": "text",
    ".asciidoc": "text",
    ".org": "text",
    ".out": "text",
    ".err": "text",
    # SVG figures (their labels read, checks/figures.py) and Jupyter notebooks (their cells
    # and outputs read, checks/notebooks.py): leaks12
    ".svg": "text",
    ".ipynb": "json",
    ".zip": "zip",
    ".gz": "gzip",
    ".tgz": "gzip",
    ".bz2": "bzip2",
    ".xz": "xz",
    ".7z": "7z",
    ".rar": "rar",
    ".tar": "tar",
    ".zst": "zstd",
    ".exe": "executable",
    ".so": "executable",
}


@dataclass(frozen=True)
class Detected:
    """The detected content type, a description, and for gzip-wrapped NIfTI the wrapper."""

    type: str
    detail: str
    gzip_wrapped: bool = False
    zip_based: bool = False
    """A ZIP container (XLSX, torch, npz): its members are judged by the format's own check."""
    one_column: bool = False
    """Text whose lines are single short values (a header and rows, no delimiter): a one-column
    table, which a ``.csv``/``.tsv`` name describes truthfully (newcomer9: `count` / `2` was
    flagged as a mislabelled file)."""


def expected_type(display_name: str) -> str | None:
    """The content type the file name promises, or None for an unknown/absent extension."""
    lower = display_name.lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return EXTENSIONS[ext]
    return None


def compatible(expected: str, detected: str) -> bool:
    """Whether the extension's promise and the content agree (text kinds are interchangeable
    except that a .csv/.tsv must really be a table or at least text)."""
    if expected == detected:
        return True
    if expected in ("csv", "tsv"):
        return detected in ("csv", "tsv")  # a .csv that is not a table is not what it claims
    return expected in TEXT_TYPES and detected in TEXT_TYPES


def _nifti(head: bytes) -> str | None:
    if len(head) >= 348:
        for endian in "<>":
            (size,) = struct.unpack(endian + "i", head[:4])
            if size == 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
                return "NIfTI-1"
    if len(head) >= 540:
        for endian in "<>":
            (size,) = struct.unpack(endian + "i", head[:4])
            if size == 540 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
                return "NIfTI-2"
    return None


def nifti_version(head: bytes) -> str | None:
    """'NIfTI-1' or 'NIfTI-2' when the bytes start with a NIfTI header, else None."""
    return _nifti(head)


def _gunzip_head(path: Path, n: int = 600) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError, zlib.error):
        return b""


def _magic(head: bytes) -> tuple[str, str] | None:
    """(type, description) for binary signatures at offset 0 (and DICM at 128, ustar at 257)."""
    # First: a DICOM preamble may itself look like TIFF (PS3.10 dual-personality files).
    if head[128:132] == b"DICM":
        return "dicom", "DICOM Part 10 file"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png", "PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg", "JPEG image"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", "GIF image"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff", "TIFF image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp", "WebP image"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and struct.unpack("<I", head[14:18])[0] in (12, 40, 52, 56, 108, 124)
    ):
        return "bmp", "BMP image"
    nifti = _nifti(head)
    if nifti:
        return "nifti", nifti
    if head.startswith(b"%PDF-"):
        return "pdf", "PDF document"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip", "ZIP archive (also docx/xlsx/jar/npz)"
    if head.startswith(b"\x1f\x8b"):
        return "gzip", "gzip-compressed data"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bzip2", "bzip2-compressed data"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz", "xz-compressed data"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z", "7-Zip archive"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar", "RAR archive"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd", "Zstandard-compressed data"
    if head[257:262] == b"ustar":
        return "tar", "tar archive"
    if head.startswith(b"\x7fELF"):
        return "executable", "ELF executable"
    if head[:2] == b"MZ":
        return "executable", "DOS/Windows executable"
    if head[:4] in (b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe"):
        return "executable", "Mach-O executable"
    return None


ALLOWED_CONTROL = frozenset(b"\t\n\r\f\x1b\x08")
_CONTROL_BYTES = bytes(b for b in range(32) if b not in ALLOWED_CONTROL) + b"\x7f"


def decode_text(data: bytes, truncated: bool) -> str | None:
    """The text if ``data`` is UTF-8 text with (almost) no control characters, else None.

    ANSI escapes (\\x1b) and backspaces are allowed because progress bars write them to logs.
    """
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A sample cut in the middle of a multi-byte character is still text.
        if truncated and exc.start >= len(data) - 3:
            text = data[: exc.start].decode("utf-8", errors="strict")
        else:
            return None
    controls = len(data) - len(data.translate(None, delete=_CONTROL_BYTES))
    if controls > max(2, len(data) // 1000):
        return None
    return text


def json_lines(text: str, truncated: bool) -> bool:
    """Two or more lines, each one JSON object or array (the cut last line of a sample aside)."""
    lines = text.splitlines()
    if truncated and lines:
        lines = lines[:-1]
    lines = [ln for ln in lines if ln.strip()]
    if len(lines) < 2:
        return False
    for line in lines[:200]:
        if line.lstrip()[:1] not in ("{", "["):
            return False
        try:
            json.loads(line)
        except ValueError:
            return False
    return True


def sniff_table(text: str, truncated: bool = False) -> str | None:
    """'csv' or 'tsv' when the text is a delimited table of 2+ columns and consistent rows.

    ``truncated``: the text is a sample cut at a byte count, so its last row is incomplete and
    is left out (a 1.1 MB CSV was once taken for plain text because of its cut last line).
    """
    lines = [ln for ln in text.splitlines()[:200] if ln.strip()]
    if truncated and "\n" in text and not text.endswith("\n"):
        lines = [ln for ln in text[: text.rindex("\n")].splitlines()[:200] if ln.strip()]
    # comment lines above the header ("# exported by ...") do not make a table plain text
    # (redteam9: a .csv with one was flagged as not a table); `tables.parse_table` skips them
    lines = lines[next((i for i, ln in enumerate(lines) if not ln.lstrip().startswith("#")), len(lines)) :]
    if len(lines) < 2:
        return None
    for delim, kind in (("\t", "tsv"), (",", "csv"), (";", "csv")):
        if delim not in lines[0]:
            continue
        try:
            rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delim))
        except csv.Error:
            continue
        widths = {len(r) for r in rows}
        if len(widths) == 1 and rows and len(rows[0]) >= 2:
            return kind
    return None


ONE_COLUMN_MAX_CHARS = 128
"""A longer line is prose, not a cell."""


def one_column_table(text: str, truncated: bool = False) -> bool:
    """Whether the text is a header and rows of one short value each (comment lines above it
    allowed): a one-column CSV/TSV, which ``sniff_table`` (2+ columns) cannot tell from text."""
    lines = text.splitlines()
    if truncated and lines:
        lines = lines[:-1]
    lines = [ln for ln in lines if ln.strip()]
    lines = lines[next((i for i, ln in enumerate(lines) if not ln.lstrip().startswith("#")), len(lines)) :]
    if len(lines) < 2:
        return False
    header, rows = lines[0], lines[1:]
    if len(header) > ONE_COLUMN_MAX_CHARS or any(d in header for d in (",", ";", "\t")):
        return False
    # a cell is one token: "site A had 3 patients" is a sentence, and prose named .csv stays
    # flagged (it would otherwise skip the checks of counts written in text)
    return all(
        len(ln) <= ONE_COLUMN_MAX_CHARS and len(ln.split()) == 1 and not any(d in ln for d in ",;")
        for ln in rows
    )


def detect(path: Path) -> Detected:
    """Detect the content type of ``path`` from its bytes."""
    with path.open("rb") as fh:
        sample = fh.read(TEXT_SAMPLE_BYTES)
        truncated = bool(fh.read(1))
    found = _magic(sample)
    if found:
        kind, detail = found
        if kind == "gzip":
            inner = _gunzip_head(path)
            nifti = _nifti(inner)
            if nifti:
                return Detected("nifti", f"gzip-compressed {nifti}", gzip_wrapped=True)
        if kind == "zip":
            refined = _zip_kind(path)
            if refined:
                return Detected(*refined, zip_based=True)
        return Detected(kind, detail)
    special = _model_or_table(path, sample)
    if special:
        return Detected(*special)
    if not sample:
        return Detected("text", "empty file")
    text = decode_text(sample, truncated)
    if text is not None:
        stripped = text.strip()
        if stripped[:1] in ("{", "[") and (not truncated or path.stat().st_size <= JSON_FULL_READ_BYTES):
            try:
                json.loads(stripped if not truncated else path.read_bytes())
                return Detected("json", "JSON document")
            except ValueError:
                pass
            if json_lines(text, truncated):
                return Detected("json", "JSON Lines (one JSON value per line)")
        table = sniff_table(text, truncated)
        if table:
            return Detected(table, "tab-separated table" if table == "tsv" else "comma-separated table")
        if one_column_table(text, truncated):
            return Detected("text", "UTF-8 text, one value per line", one_column=True)
        return Detected("text", "UTF-8 text")
    try:
        guess = puremagic.from_string(sample[:8192], mime=False)
        described = f"unrecognised binary (puremagic: {guess})"
    except (puremagic.PureError, ValueError):
        described = "unrecognised binary data"
    return Detected("binary", described)


def _zip_kind(path: Path) -> tuple[str, str] | None:
    """ZIP-based formats by their members: XLSX workbooks, PyTorch checkpoints, NumPy .npz."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        return None
    if "[Content_Types].xml" in names and "xl/workbook.xml" in names:
        return "xlsx", "Excel workbook (XLSX)"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "model", "PyTorch checkpoint (zip with data.pkl)"
    if names and all(n.endswith(".npy") for n in names):
        return "model", "NumPy .npz archive of arrays"
    return None


def _arrow_stream(path: Path) -> bool:
    """Whether the bytes open as an Arrow IPC stream (a schema message after the continuation
    marker; no magic of its own)."""
    try:
        import pyarrow as pa

        with pa.OSFile(str(path)) as source:
            pa.ipc.open_stream(source)
    except Exception:  # noqa: BLE001 - any failure means it is not a stream
        return False
    return True


def _model_or_table(path: Path, head: bytes) -> tuple[str, str] | None:
    """Formats with no magic at offset 0 that _magic knows: Parquet, safetensors, ONNX, pickle, npy."""
    size = path.stat().st_size
    if head.startswith(b"PAR1") and size >= 12:
        with path.open("rb") as fh:
            fh.seek(-4, 2)
            if fh.read(4) == b"PAR1":
                return "parquet", "Apache Parquet table"
    if head.startswith(b"\x93NUMPY"):
        return "model", "NumPy .npy array"
    if head.startswith(b"ARROW1") and size >= 12:
        return "arrow", "Apache Arrow IPC file (Feather)"
    if head.startswith(b"\xff\xff\xff\xff") and len(head) >= 16 and _arrow_stream(path):
        return "arrow", "Apache Arrow IPC stream"
    if len(head) >= 10 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and n <= len(head) - 8:
            try:
                meta = json.loads(head[8 : 8 + n])
            except ValueError:
                meta = None
            if isinstance(meta, dict) and any(
                isinstance(v, dict) and "dtype" in v and "data_offsets" in v for v in meta.values()
            ):
                return "model", "safetensors tensors"
    if looks_like_onnx(head):
        return "model", "ONNX model (protobuf)"
    if looks_like_pickle(path, head, size):
        return "model", "Python pickle"
    return None


PICKLE_SCAN_BYTES = 64 * 1024 * 1024
# Tags of the ModelProto fields that follow ir_version (field 1, varint) in a serialised model:
# producer_name/version, domain, model_version, doc_string, graph, opset_import, metadata_props.
_ONNX_NEXT_TAGS = frozenset(b"\x12\x1a\x22\x28\x32\x3a\x42\x72")


def looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto starts with its IR version (tag 0x08, a small varint), then another
    ModelProto field; exporters also name the ``ai.onnx`` domains early. Whether it really is
    a model is then decided by parsing it (`checks.onnx_model`), which refuses what is not."""
    if head[:1] != b"\x08":
        return False
    if b"ai.onnx" in head[:65536] or b"onnx" in head[:256]:
        return True
    return len(head) > 2 and 1 <= head[1] <= 15 and head[2] in _ONNX_NEXT_TAGS


def looks_like_pickle(path: Path, head: bytes, size: int) -> bool:
    """Binary pickles start with PROTO; text (protocol 0) pickles are recognised by parsing.

    A protocol-0 pickle is printable ASCII, so renamed ``.txt`` it looks like text. It is a
    pickle when ``pickletools.genops`` walks the whole file to a final STOP opcode, which
    ordinary text does not survive.
    """
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True
    if size > PICKLE_SCAN_BYTES:
        return False
    with path.open("rb") as fh:
        fh.seek(max(0, size - 4))
        if not fh.read().rstrip(b"\r\n").endswith(b"."):
            return False
    from egress_review.checks.pickles import parses_as_pickle

    data = head if size <= len(head) else path.read_bytes()
    return parses_as_pickle(data)
