"""`run_checks`: every check that applies to one staged file, chosen by its detected content."""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from egress_review.checks.acro import check_acro_results, claims_for, is_acro_results
from egress_review.checks.ages import text_ages
from egress_review.checks.archives import check_archive
from egress_review.checks.cross_file import check_across_files
from egress_review.checks.detect import (
    ARCHIVE_TYPES,
    IMAGE_TYPES,
    TEXT_TYPES,
    Detected,
    decode_text,
    detect,
    expected_type,
)
from egress_review.checks.dicom import check_dicom
from egress_review.checks.encoded import find_encoded
from egress_review.checks.figures import check_drawn_counts, is_svg, svg_texts
from egress_review.checks.files import check_hidden, check_limits, check_type
from egress_review.checks.images import check_nifti, check_raster, raw_similarity
from egress_review.checks.markup_tables import UNREAD, markup_kind, read_markup
from egress_review.checks.model import CheckContext, CheckResult, action_outcome
from egress_review.checks.model_release import check_model, json_weights, structural_results
from egress_review.checks.name_counts import check_name_counts, check_text_token_counts
from egress_review.checks.notebooks import is_notebook, read_notebook, series_tables
from egress_review.checks.numbers import check_number_text
from egress_review.checks.pdf import check_pdf
from egress_review.checks.prose_flow import check_prose_flow
from egress_review.checks.released import check_against_releases
from egress_review.checks.shifted_dates import check_shifted_dates
from egress_review.checks.split_dates import MAX_ROWS as MAX_SPLIT_DATE_ROWS
from egress_review.checks.split_dates import check_iso_form_dates, check_split_dates, object_rows
from egress_review.checks.table_readers import (
    ReadTables,
    json_tables,
    parse_json,
    read_arrow,
    read_parquet,
    read_xlsx,
)
from egress_review.checks.tables import check_rows, check_table, classify, header_matches, parse_table
from egress_review.checks.text import MAX_TEXT_BYTES, check_identifiers, check_text
from egress_review.checks.text_counts import check_text_counts
from egress_review.checks.text_tables import (
    aligned_tables,
    asciidoc_tables,
    framed_tables,
    html_tables,
    latex_tables,
    markdown_tables,
    risk_tables,
    rst_list_tables,
    rst_simple_tables,
)
from tre.plural import agree, count
from tre.policy import Policy


def run_checks(path: Path, display_name: str, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """Check one file under one policy; the caller combines outcomes with `worst`.

    ``path`` is the frozen staged copy; ``display_name`` the name the researcher gave it (its
    extension is compared with the content). Checks never trust the extension to decide which
    content checks run: a CSV renamed .png is still checked as a table.
    """
    path = Path(path)
    results: list[CheckResult] = [check_limits(path, policy, context)]
    if path.stat().st_size > policy.files.max_file_bytes:
        return results  # refuse to parse what is already over the limit
    detected = detect(path)
    results.extend(check_type(display_name, detected, policy))
    if detected.type in ARCHIVE_TYPES and detected.type in policy.files.allowed_types:
        # an archive the policy lets leave is judged by its members, never on its container's word
        results.extend(check_archive(path, detected, policy, context, run_checks))
    hidden, data = check_hidden(path, detected, policy)
    results.extend(hidden)
    results.extend(claims_for(display_name, context))
    name_check = check_identifiers(display_name, policy, context, check="file_name")
    if name_check.outcome != "pass":
        results.append(name_check)
    # "km_2004-W04.png": a dataset date's ISO week or ordinal date in the name (leaks20)
    results.extend(check_iso_form_dates(display_name, policy, context))
    # "n3_relapsed.csv": a count in the name travels with the file (leaks12)
    results.extend(check_name_counts([("file name", display_name)], policy))
    if detected.type in TEXT_TYPES:
        # counts a few off those an earlier request of the project released (leaks13)
        results.extend(check_against_releases(path, display_name, policy, context))
        results.extend(_text_checks(path, data, detected.type, policy, context, display_name))
    elif detected.type in IMAGE_TYPES:
        results.extend(check_raster(path, policy, context))
    elif detected.type == "nifti" and data is not None:
        results.extend(check_nifti(data, policy, context))
    elif detected.type == "dicom":
        results.extend(check_dicom(path, policy, context))
    elif detected.type in ("xlsx", "parquet", "arrow"):
        if detected.type == "xlsx":  # the same table released before as CSV (leaks14)
            results.extend(check_against_releases(path, display_name, policy, context))
        results.extend(_binary_table_checks(path, detected, policy, context))
    elif detected.type == "pdf" and detected.type in policy.files.allowed_types:
        # its text layer as a text file, its images as pictures (leaks13)
        results.extend(
            check_pdf(
                path,
                policy,
                context,
                lambda text, kind: _text_checks(text, None, kind, policy, context, "pdf-text.txt"),
                lambda picture: check_raster(picture, policy, context),
            )
        )
    elif detected.type == "model":
        results.extend(check_model(path, detected, policy, context, display_name))
    elif detected.type in UNINSPECTED_TYPES and detected.type in policy.files.allowed_types:
        # allowed by the policy, but no check reads inside it: never a silent pass
        results.append(
            CheckResult(
                check="content_uninspected",
                outcome="flag",
                reason=f"no automated check reads inside {detected.detail}: the reviewers must open it "
                "and look for identifiers and raw data themselves",
                evidence={"detected": detected.type},
            )
        )
    return results


# Content types a policy may allow that no check parses (executables, unknown bytes).
UNINSPECTED_TYPES = frozenset({"executable", "binary"})


def _binary_table_checks(
    path: Path, detected: Detected, policy: Policy, context: CheckContext
) -> list[CheckResult]:
    """XLSX sheets and Parquet tables: SDC on every table, identifiers in every cell and property."""
    try:
        readers = {"xlsx": read_xlsx, "parquet": read_parquet, "arrow": read_arrow}
        read: ReadTables = readers[detected.type](path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the content is not what it claims
        return [
            CheckResult(
                check="table_read",
                outcome="block",
                reason=f"the {detected.detail} cannot be read as a table ({type(exc).__name__})",
                evidence={"error": str(exc)[:200]},
            )
        ]
    out: list[CheckResult] = []
    if read.unusual_parts:
        out.append(
            CheckResult(
                check="xlsx_parts",
                outcome="block" if any("vba" in p.lower() for p in read.unusual_parts) else "flag",
                reason=f"the workbook holds {count(len(read.unusual_parts), 'part')} that "
                f"{agree(len(read.unusual_parts), 'is', 'are')} not cells "
                "(macros, embedded objects, pictures or external links), which reviewers do not see",
                evidence={"parts": read.unusual_parts[:30]},
            )
        )
    # the first table first: its header is then the text's first line, which tells a serial day
    # in a `dob` column from a number in another (checks/dates.py)
    cells_text = "\n".join([*("\t".join(r) for rows in read.tables.values() for r in rows), *read.other_text])
    out.extend(check_text(cells_text, policy, context))
    out.extend(check_split_dates(list(read.tables.values())[:50], policy, context))
    for rows in list(read.tables.values())[1:50]:
        # each further sheet alone too: its own header tells a serial day in its `dob` column
        # (leaks12: a birth date as a serial day on a workbook's second sheet passed)
        sheet = check_identifiers("\n".join("\t".join(r) for r in rows), policy, context)
        if sheet.outcome != "pass" and not any(r.check == "identifiers" and r.outcome != "pass" for r in out):
            out.append(sheet)
    if read.part_text:
        in_parts = check_identifiers("\n".join(read.part_text), policy, context, check="identifiers:parts")
        if in_parts.outcome != "pass":
            out.append(in_parts)
    if read.binary_columns:
        out.append(
            CheckResult(
                check="table_binary",
                outcome="flag",
                reason=f"{count(len(read.binary_columns), 'column')} "
                f"{agree(len(read.binary_columns), 'holds', 'hold')} raw bytes, which reviewers cannot read "
                "and the table rules cannot judge (an image or any file can be stored in them)",
                evidence={"columns": read.binary_columns[:20]},
            )
        )
    for where, rows in read.tables.items():
        if rows:
            out.extend(check_rows(rows, policy, where))
    headers = (
        ("column header", h) for rows in read.tables.values() for h in (rows[0] if rows else [])[:1000]
    )
    out.extend(check_name_counts(headers, policy))
    return out


def _text_checks(
    path: Path, data: bytes | None, kind: str, policy: Policy, context: CheckContext, path_name: str = ""
) -> list[CheckResult]:
    """Decode the whole file (type detection only sampled the first MiB), then check it."""
    raw = data if data is not None else path.read_bytes()
    truncated = len(raw) > MAX_TEXT_BYTES or raw is data and path.stat().st_size > len(raw)
    text = decode_text(raw[:MAX_TEXT_BYTES], truncated=truncated)
    if text is None:
        # Text at the start, binary later: exactly how a payload would be appended to a log.
        return [
            CheckResult(
                check="text_decode",
                outcome="block",
                reason="the file starts as text but is not UTF-8 text throughout (binary bytes further in)",
            )
        ]
    out: list[CheckResult] = []
    if truncated:
        out.append(
            CheckResult(
                check="text_decode",
                outcome="flag",
                reason=f"only the first {MAX_TEXT_BYTES // (1024 * 1024)} MiB of this text were scanned",
            )
        )
    if kind == "json" and '"nbformat"' in text[:65536] + text[-65536:]:
        notebook = _notebook_checks(text, path_name or path.name, policy, context)
        if notebook is not None:
            return out + notebook
    out.extend(check_text(text, policy, context))
    out.extend(check_iso_form_dates(text, policy, context))  # "2004-W04", "2004-019" (leaks20)
    if kind not in ("csv", "tsv"):  # "dates shifted by +30 days" (airlock round 18; tables below)
        out.extend(check_shifted_dates(text, policy, context))
    out.extend(text_ages(text))  # "aged 93", "oldest_age: 93" (leaks20)
    if kind == "text":  # "Of 35 screened, 33 were enrolled" (leaks21; tables: `released`)
        out.extend(check_prose_flow(text, policy.sdc.threshold))
    out.extend(_decoded_checks(text, path_name or path.name, policy, context))
    if kind == "json":
        # base64 inside a JSON string has its line breaks escaped ("\\n"): look at the strings
        strings = "\n".join(_json_strings(text))
        if strings:
            out.extend(_decoded_checks(strings, path_name or path.name, policy, context))
    if kind == "json":
        out.extend(_json_checks(text, path_name, policy, context))
        out.extend(r for r in check_number_text(text, policy) if r.check == "sdc:image_table")
    if kind == "json" and "\\u" in text:
        # "\u0044oe" is "Doe" to any JSON reader: scan the decoded strings as well.
        try:
            decoded = json.dumps(parse_json(text), ensure_ascii=False, indent=1)
        except ValueError:
            decoded = ""
        escaped = check_identifiers(decoded, policy, context, check="identifiers:json_decoded")
        if escaped.outcome != "pass":
            out.append(escaped)
    if kind in ("json", "csv", "tsv"):
        out.extend(check_text_counts(text, policy, named=False))  # sentences in strings and cells
    # counts glued into tokens (`site_A_had_3`, `3pts`, `auc_n3`), a header's or a key's `n=3`
    out.extend(check_text_token_counts(text, policy))
    if kind == "json":
        out.extend(check_name_counts((("key", k) for k in _json_keys(text)), policy))
    if kind == "text" and expected_type(path_name) in ("csv", "tsv"):
        kind = str(expected_type(path_name))  # one column, or ragged: still a table by its name
    if kind in ("csv", "tsv") and path_name.lower().endswith((".yaml", ".yml")) and _yaml_mapping(text):
        # `sites: [A, B, C]` / `n: [45, 3, 52]` has three comma-separated fields a line and was
        # read as a CSV whose header is `sites: [A` (leaks11): a YAML document is read as YAML
        kind = "text"
    if kind in ("csv", "tsv"):
        delimiter = "\t" if kind == "tsv" else _delimiter(text)
        header = text.lstrip("\ufeff").split("\n", 1)[0].split(delimiter)
        out.extend(check_name_counts((("column header", h) for h in header[:1000]), policy))
        out.extend(check_table(text, delimiter, policy))
        rows = _csv_rows(text, delimiter)
        out.extend(check_split_dates([rows], policy, context))
        out.extend(check_shifted_dates(text, policy, context, rows))  # a date_shift_days column
        # a suppressed cell whose total another file of the request states (leaks11)
        out.extend(check_across_files(parse_table(text, delimiter, policy.sdc), path_name, policy, context))
    elif kind == "text":
        out.extend(_embedded_tables(text, policy))
        out.extend(check_number_text(text, policy))
        is_yaml = path_name.lower().endswith((".yaml", ".yml"))
        if is_yaml:
            out.extend(_yaml_tables(text, policy))
        svg = is_svg(path_name, text)
        markup = None if svg else markup_kind(path_name, text)
        if svg:
            # a figure: its labels are read (bar labels are counts), not its attributes as tables
            labels = svg_texts(text)
            out.extend(check_drawn_counts(labels, policy, "SVG figure"))
            out.extend(check_text_counts("\n".join(labels), policy))
        elif markup is not None:
            out.extend(_markup_tables(markup, text, policy))
        # counts in `name=value` lines and in sentences (YAML, TOML and INI keys were read above)
        out.extend(check_text_counts(text, policy, named=not is_yaml and markup in (None, "xml")))
    return out


def _csv_rows(text: str, delimiter: str) -> list[list[str]]:
    """A delimited text's rows as written (cells not yet read as numbers), bounded."""
    import csv
    import itertools

    return list(itertools.islice(csv.reader(io.StringIO(text), delimiter=delimiter), MAX_SPLIT_DATE_ROWS))


def _markup_tables(kind: str, text: str, policy: Policy) -> list[CheckResult]:
    """Counts written as XML, TOML or INI get the SDC rules, read as JSON would be."""
    doc = read_markup(kind, text)
    if doc is UNREAD:
        return [
            CheckResult(
                check="table_read",
                outcome="flag",
                reason=f"the {kind.upper()} document is too large or declares a DOCTYPE, so it was not read "
                "as tables: check any counts in it by eye",
            )
        ]
    out: list[CheckResult] = []
    for where, rows in _without_settings(json_tables(doc), policy) if doc is not None else []:
        out.extend(
            r for r in check_rows(rows, policy, f"{kind.upper()} table at {where}") if r.outcome != "pass"
        )
    return out


# YAML read as tables only up to this size; anchors and aliases are not expanded (an alias
# bomb multiplies a few lines into billions of cells).
MAX_YAML_CHARS = 8 * 1024 * 1024
_YAML_ALIAS = re.compile(r"(?:^|[\s\[{,:-])[&*][^\s\[\]{},]+", re.MULTILINE)


def _yaml_tables(text: str, policy: Policy) -> list[CheckResult]:
    """Counts written as YAML (`sites: {A: {n: 45}, B: {n: 3}}`) get the same SDC rules as
    JSON: the document is read with the safe loader and its tables found the same way."""
    import yaml

    if len(text) > MAX_YAML_CHARS or _YAML_ALIAS.search(text):
        return [
            CheckResult(
                check="table_read",
                outcome="flag",
                reason="the YAML document is too large or uses anchors and aliases, so it was not read as "
                "tables: check any counts in it by eye",
            )
        ]
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return []  # not YAML after all: the text checks above have judged it
    out: list[CheckResult] = []
    for where, rows in _without_settings(json_tables(doc), policy):
        out.extend(r for r in check_rows(rows, policy, f"YAML table at {where}") if r.outcome != "pass")
    return out


def _without_settings(
    tables: Iterator[tuple[str, list[list[str]]]], policy: Policy
) -> list[tuple[str, list[list[str]]]]:
    """The first 20 tables of a document, a mapping of labels to numbers without the labels
    that name settings (leaks12: ``train: {epochs: 200, batch_size: 8, seed: 42}`` in a
    config was a column 'train' holding a small count). The labels are the values' own names:
    `sdc.parameter_columns` judges them as it judges column headers."""
    out: list[tuple[str, list[list[str]]]] = []
    for where, rows in list(tables)[:20]:
        if rows and rows[0][:1] == ["label"] and len(rows[0]) == 2:
            rows = [rows[0], *(r for r in rows[1:] if not header_matches(r[0], policy.sdc.parameter_columns))]
            if len(rows) == 1:
                continue
        out.append((where, rows))
    return out


def _yaml_mapping(text: str) -> bool:
    """Whether ``text`` parses as a YAML mapping or list (bounded, no aliases expanded)."""
    import yaml

    if len(text) > MAX_YAML_CHARS or _YAML_ALIAS.search(text):
        return False
    try:
        return isinstance(yaml.safe_load(text), dict | list)
    except yaml.YAMLError:
        return False


def _embedded_tables(text: str, policy: Policy) -> list[CheckResult]:
    """Tables written in text (Markdown, org, HTML, LaTeX, reStructuredText, AsciiDoc, aligned
    columns) get the SDC rules (only their findings are reported)."""
    found = [(f"Markdown table at line {line}", rows) for line, rows in markdown_tables(text)]
    found += [(f"HTML table {i + 1}", rows) for i, rows in enumerate(html_tables(text))]
    found += [(f"LaTeX table {i + 1}", rows) for i, rows in enumerate(latex_tables(text))]
    found += [(f"pipe-framed table at line {line}", rows) for line, rows in framed_tables(text)]
    found += [(f"reStructuredText table at line {line}", rows) for line, rows in rst_simple_tables(text)]
    found += [(f"reStructuredText list-table at line {line}", rows) for line, rows in rst_list_tables(text)]
    found += [(f"AsciiDoc table at line {line}", rows) for line, rows in asciidoc_tables(text)]
    found += [(f"number-at-risk table at line {line}", rows) for line, rows in risk_tables(text)]
    if "type:" in text:
        found += [(f"printed pandas Series at line {line}", rows) for line, rows in series_tables(text)]
    found += [
        (f"aligned table at line {line}", rows)
        for line, rows in aligned_tables(text)
        if _names_counts(rows[0], policy)
    ]
    out: list[CheckResult] = []
    for where, rows in found:
        out.extend(r for r in check_rows(rows, policy, where) if r.outcome != "pass")
    return out


def _names_counts(header: list[str], policy: Policy) -> bool:
    """Whether a header names a count or contributor column (`sdc` globs). Magnitudes alone
    do not make an aligned block a table: a training log's `mean_dice` column is not one."""
    table = classify([header, header], policy.sdc)
    return bool(table.counts or table.contributors)


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    return ";" if first.count(";") > first.count(",") else ","


def _json_checks(text: str, name: str, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """Tables inside JSON get the SDC rules; arrays of many numbers are reviewed as model weights;
    an ACRO results.json is read and verified for the reviewers."""
    try:
        doc: Any = parse_json(text)
    except ValueError:
        return []
    if is_acro_results(doc):
        return check_acro_results(doc, name, context)
    out: list[CheckResult] = []
    for where, rows in _without_settings(json_tables(doc), policy):
        results = check_rows(rows, policy, f"JSON table at {where}")
        out.extend(r for r in results if r.outcome != "pass")
    weights = json_weights(doc, policy.models.min_weights)
    if weights is not None:
        out.extend(structural_results(weights, policy, context))
    if not out:
        out.append(CheckResult(check="sdc", outcome="pass", reason="no disclosive table found in the JSON"))
    # a year and a day of the year (or a month and a day) as keys of one object (leaks20)
    out.extend(check_split_dates(object_rows(doc), policy, context))
    return out


def _decoded_checks(text: str, name: str, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """Base64 and hex content decoded and checked as a file of its own (nested up to decode_depth)."""
    if context.depth >= policy.text.decode_depth:
        return []
    out: list[CheckResult] = []
    nested = CheckContext(
        identifiers=context.identifiers,
        file_count=context.file_count,
        total_size=context.total_size,
        dataset_paths=context.dataset_paths,
        training_records=context.training_records,
        depth=context.depth + 1,
    )
    blobs = find_encoded(text, policy.text.encoded_blob_min_chars)
    with tempfile.TemporaryDirectory(prefix="tre-decoded-") as tmp:
        for i, blob in enumerate(blobs):
            decoded = Path(tmp) / f"decoded-{i}"
            data, wrapper = decompressed(blob.data, policy.files.max_uncompressed_bytes)
            decoded.write_bytes(data)
            inner = detect(decoded)
            results = [
                r
                for r in run_checks(decoded, f"{name}#decoded-{i}", policy, nested)
                if r.outcome != "pass"
                and r.check not in ("extension", "limits")
                and not (r.check == "file_type" and inner.type == "binary")  # the blob flag says it
            ]
            where = f"{blob.kind} at line {blob.line} decodes to {len(blob.data)} bytes of " + (
                f"{wrapper} data holding {len(data)} bytes of {inner.detail}" if wrapper else inner.detail
            )
            out.append(
                CheckResult(
                    check="encoded:decoded",
                    outcome=action_outcome(policy.text.encoded_blob),
                    reason=where + "; the decoded content was checked as a file of its own",
                    evidence={
                        "kind": blob.kind,
                        "line": blob.line,
                        "bytes": len(blob.data),
                        "detected": inner.type,
                    },
                )
            )
            out.extend(
                r.model_copy(update={"check": f"decoded:{r.check}", "reason": f"{where}: {r.reason}"})
                for r in results
            )
            if inner.type == "binary":
                raw = raw_similarity(data, policy, context, "the decoded bytes")
                if raw is not None:
                    out.append(raw.model_copy(update={"check": f"decoded:{raw.check}"}))
    return out


def decompressed(data: bytes, limit: int) -> tuple[bytes, str]:
    """Encoded content is often compressed first (``gzip | base64``): gzip, zlib, bzip2 and xz
    are inflated (at most ``limit`` bytes; a bomb is cut there) so the content itself is checked.
    Returns the bytes to check and the wrapper's name ('' when not compressed)."""
    import bz2
    import lzma
    import zlib

    makers: dict[str, tuple[bytes, Callable[[], Any]]] = {
        "gzip": (b"\x1f\x8b", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
        "zlib": (b"\x78", lambda: zlib.decompressobj()),
        "bzip2": (b"BZh", lambda: bz2.BZ2Decompressor()),
        "xz": (b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor()),
    }
    for name, (magic, make) in makers.items():
        if not data.startswith(magic):
            continue
        try:
            inner = make().decompress(data, limit)
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
            continue
        if inner:
            return inner, name
    return data, ""


def _notebook_checks(text: str, name: str, policy: Policy, context: CheckContext) -> list[CheckResult] | None:
    """A Jupyter notebook: its identifiers anywhere in the JSON, then its cells and outputs as
    the text a reader sees and its pictures as image files (checks/notebooks.py); None when the
    JSON is no notebook."""
    try:
        doc: Any = parse_json(text)
    except ValueError:
        return None
    if not is_notebook(doc):
        return None
    nb = read_notebook(doc)
    out = [check_identifiers(text, policy, context)]  # metadata, attachments' names, anything
    parts = [(f"{name}#cells.md", nb.text.encode())] if nb.text else []
    parts += [(f"{name}#output-{i}.{suffix}", data) for i, (suffix, data) in enumerate(nb.images)]
    with tempfile.TemporaryDirectory(prefix="tre-notebook-") as tmp:
        for i, (part_name, data) in enumerate(parts):
            part = Path(tmp) / f"part-{i}{Path(part_name).suffix}"
            part.write_bytes(data)
            where = (
                "the notebook's cells and outputs"
                if i == 0 and nb.text
                else "a picture output of the notebook"
            )
            out.extend(
                r.model_copy(update={"reason": f"in {where}: {r.reason}"})
                for r in run_checks(part, part_name, policy, context)
                if r.outcome != "pass" and r.check not in ("extension", "limits", "file_name")
            )
    if nb.undecodable:
        out.append(
            CheckResult(
                check="notebook",
                outcome="flag",
                reason=f"{count(nb.undecodable, 'picture output')} of the notebook "
                f"{agree(nb.undecodable, 'is', 'are')} not valid base64: "
                "open them by hand",
            )
        )
    return out


MAX_KEYS = 10_000  # keys of one JSON document read for counts in their names


def _json_keys(text: str) -> list[str]:
    """The distinct keys of a JSON document (at most MAX_KEYS, 20 levels deep)."""
    try:
        doc: Any = parse_json(text)
    except ValueError:
        return []
    keys: dict[str, None] = {}

    def walk(node: Any, depth: int) -> None:
        if depth > 20 or len(keys) >= MAX_KEYS:
            return
        if isinstance(node, list):
            for x in node[:10_000]:
                walk(x, depth + 1)
        elif isinstance(node, dict):
            for k, v in node.items():
                keys.setdefault(str(k))
                walk(v, depth + 1)

    walk(doc, 0)
    return list(keys)


def _json_strings(text: str, min_chars: int = 256) -> list[str]:
    """The long string values of a JSON document, unescaped (each on its own lines)."""
    try:
        doc: Any = parse_json(text)
    except ValueError:
        return []
    found: list[str] = []

    def walk(node: Any, depth: int) -> None:
        if depth > 20 or len(found) > 100:
            return
        if isinstance(node, str):
            if len(node) >= min_chars and "\n" in node:
                found.append(node)
        elif isinstance(node, list):
            for x in node:
                walk(x, depth + 1)
        elif isinstance(node, dict):
            for v in node.values():
                walk(v, depth + 1)

    walk(doc, 0)
    return found
