"""Counts written as XML, TOML or INI (redteam9, round 5): read into the same nested shape as
JSON, so `table_readers.json_tables` finds their tables and the SDC rules apply.

`<row><group>lung</group><n>3</n></row>` repeated, `<cell group="lung" count="3"/>`,
`[[row]] group = "lung" n = 3` and `[lung] n = 3` all passed as plain text before. XML is read
by defusedxml, and a document that declares a DOCTYPE (entities, external references: the
billion-laughs family) is not read at all and is flagged instead.
"""

from __future__ import annotations

import configparser
import re
import tomllib
import xml.etree.ElementTree as ET
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_MARKUP_CHARS = 8 * 1024 * 1024
MAX_DEPTH = 32

UNREAD = object()
"""What `read_markup` answers for a document it will not read (too large, a DOCTYPE)."""


def markup_kind(name: str, text: str) -> str | None:
    """Which reader a text output needs, by its name or (XML) its first characters."""
    lower = name.lower()
    if lower.endswith(".toml"):
        return "toml"
    if lower.endswith((".ini", ".cfg")):
        return "ini"
    head = text.lstrip("\ufeff \t\r\n")[:200]
    if lower.endswith(".xml") or head.startswith("<?xml"):
        return "xml"
    if lower.endswith((".html", ".htm")) or _HTML_START.match(head):
        return None  # an HTML page: its tables are read as a browser lays them out (text_tables)
    if head.startswith("<") and "</" in text[:4096]:
        return "xml"
    return None


# an HTML page or fragment read as XML gave its `rowspan`/`colspan` attributes as columns of
# small numbers (leaks11)
_HTML_START = re.compile(
    r"<(?:!doctype\s+html|html|head|body|table|div|p|ul|ol|h[1-6]|section|article|span)[\s>/]", re.IGNORECASE
)


def read_markup(kind: str, text: str) -> Any:
    """The document as dicts, lists and strings; None when it does not parse (the text checks
    have judged it as text); `UNREAD` when it must not be parsed."""
    if len(text) > MAX_MARKUP_CHARS:
        return UNREAD
    try:
        if kind == "toml":
            return tomllib.loads(text)
        if kind == "ini":
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(text)
            return {section: dict(parser[section]) for section in parser.sections()}
        root = fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        return UNREAD
    except (tomllib.TOMLDecodeError, configparser.Error, ET.ParseError, ValueError):
        return None
    return {_tag(root): _element(root, 0)}


def _tag(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""


def _element(element: ET.Element, depth: int) -> Any:
    """Attributes and children as keys (repeated children as a list), a leaf as its text."""
    children = list(element) if depth < MAX_DEPTH else []
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return text
    out: dict[str, Any] = {k.rsplit("}", 1)[-1]: v for k, v in element.attrib.items()}
    groups: dict[str, list[Any]] = {}
    for child in children:
        groups.setdefault(_tag(child), []).append(_element(child, depth + 1))
    for tag, items in groups.items():
        out[tag] = items if len(items) > 1 else items[0]
    if text:
        out.setdefault("text", text)
    return out
