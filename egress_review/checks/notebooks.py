"""Jupyter notebooks read as what a reader sees: cell sources, text outputs, pictures (leaks12).

A notebook is JSON, but read as JSON its structure is the table: ``"execution_count": 1``
looked like a count of one and a plotted figure like an encoded blob. What leaves in a
notebook is its cells and their outputs: a ``df.groupby('site').size()`` printed as text, an
HTML table, a figure as base64 PNG, a traceback quoting a row. So the text of every cell and
output is gathered (the text checks, tables and counts then read it as any report) and every
picture output is decoded and checked as an image file of its own (metadata, OCR).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_CELLS = 10_000
MAX_IMAGES = 200
_TEXT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}


@dataclass
class Notebook:
    """What a notebook shows: its text (cells, outputs, tracebacks) and its pictures."""

    text: str = ""
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (suffix, bytes)
    undecodable: int = 0


def is_notebook(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("cells"), list) and "nbformat" in doc


def _joined(value: Any) -> str:
    """nbformat stores multi-line strings as a list of lines."""
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value) if value is not None else ""


def read_notebook(doc: dict[str, Any]) -> Notebook:
    """The text and pictures of a notebook (`is_notebook`), cells in order."""
    out = Notebook()
    parts: list[str] = []
    for cell in doc["cells"][:MAX_CELLS]:
        if not isinstance(cell, dict):
            continue
        parts.append(_joined(cell.get("source")))
        for output in cell.get("outputs") or []:
            if not isinstance(output, dict):
                continue
            if output.get("output_type") == "stream":
                parts.append(_joined(output.get("text")))
            if output.get("output_type") == "error":
                parts.append(f"{output.get('ename', '')}: {output.get('evalue', '')}")
                parts.append(_joined(output.get("traceback")))
            data = output.get("data")
            if not isinstance(data, dict):
                continue
            for mime, value in data.items():
                if mime in _TEXT_TYPES:
                    parts.append(_joined(value))
                elif mime in _IMAGE_TYPES and len(out.images) < MAX_IMAGES:
                    try:
                        out.images.append(
                            (_IMAGE_TYPES[mime], base64.b64decode(_joined(value), validate=False))
                        )
                    except (binascii.Error, ValueError):
                        out.undecodable += 1
                elif mime == "image/svg+xml":
                    parts.append(_joined(value))
                else:
                    parts.append(_joined(value) if isinstance(value, str | list) else "")
    # attachments of Markdown cells are pictures too
    for cell in doc["cells"][:MAX_CELLS]:
        attachments = cell.get("attachments") if isinstance(cell, dict) else None
        for bundle in (attachments or {}).values() if isinstance(attachments, dict) else ():
            for mime, value in (bundle or {}).items() if isinstance(bundle, dict) else ():
                if mime in _IMAGE_TYPES and len(out.images) < MAX_IMAGES:
                    try:
                        out.images.append((_IMAGE_TYPES[mime], base64.b64decode(_joined(value))))
                    except (binascii.Error, ValueError):
                        out.undecodable += 1
    out.text = "\n".join(p for p in parts if p)
    return out


_SERIES_END = re.compile(r"^(?:Name:\s*(?P<name>[^,\n]{1,64}),\s*)?[Dd]type:\s*u?int\d*\s*$")
_SERIES_ROW = re.compile(r"^(?P<label>\S(?:.{0,78}\S)?)\s{2,}(?P<value>-?\d{1,12})\s*$")


def series_tables(text: str) -> list[tuple[int, list[list[str]]]]:
    """pandas integer Series as printed (``df.groupby('site').size()``, ``value_counts()``):
    label lines then ``dtype: int64`` (``Name: count, dtype: int64``). A printed whole-number
    Series is a count table: its column is its name, or ``n`` when it has none."""
    found: list[tuple[int, list[list[str]]]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        end = _SERIES_END.match(line.strip()) if "type" in line else None
        if end is None:
            continue
        rows: list[list[str]] = []
        j = i - 1
        while j >= 0 and len(rows) < 1000:
            m = _SERIES_ROW.match(lines[j].rstrip())
            if m is None:
                break
            rows.append([m.group("label"), m.group("value")])
            j -= 1
        if len(rows) >= 2:
            name = (end.group("name") or "n").strip()
            found.append((j + 2, [["label", name], *reversed(rows)]))
    return found
