"""Output names of a cohort's series: a pseudonym (``series-00001``), never the series UID.

Why: a SeriesInstanceUID is an identifier. Outputs named ``<uid>.nii.gz`` had their names
withheld from researchers by the platform (`egress_review.outputnames`: listed by index,
size and hash only), and every sidecar was flagged at egress for the UID it held. A
pseudonym carries no input-controlled text; the map pseudonym -> UID is kept in
``manifest.json`` only (which stays inside the environment: a later ``--input-job`` job
reads it, and its egress is flagged by the ``dicom_uid`` check).

Numbering: in a fresh output folder the series are numbered in the order of their sorted
UIDs (so ``series-00007`` is the log's series 7). A name, once given, belongs to its series
for the folder's life: the names are saved in the manifest before any series is processed,
kept whatever the recipe of a later run, and never given to another UID. A series new to
the folder (a changed input set) gets a number above every number the manifest or any file
under ``series/`` already uses, so no two series share a name and no run overwrites the
finished output of another series.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

SERIES_DIR = "series"  # the per-series files, under the output folder; manifest.json stays at the top
PREFIX = "series-"
DIGITS = 5
# A pseudonym, alone or as the start of a file name (``series-00001.nii.gz``, or the hidden
# ``.series-00001.nii.gz.*.partial`` of a write in progress). At most a million series.
_NAME = re.compile(rf"{PREFIX}(\d{{{DIGITS},7}})")
_FILE = re.compile(rf"\.?{PREFIX}(\d{{{DIGITS},7}})(?![0-9])")


def pseudonym(number: int) -> str:
    """The name of series ``number`` (1-based): ``series-00001``."""
    return f"{PREFIX}{number:0{DIGITS}d}"


def number_of(name: str) -> int | None:
    """The number of a pseudonym, or None when ``name`` is not exactly one."""
    m = _NAME.fullmatch(name)
    return int(m.group(1)) if m and m.group(1) == f"{int(m.group(1)):0{DIGITS}d}" else None


def valid_names(raw: object) -> dict[str, str]:
    """The pseudonym -> UID map read from a manifest, keeping only well-formed entries and,
    of two names for one UID, the lower (a damaged or edited manifest must not make two
    series share a name, nor one series own two)."""
    if not isinstance(raw, dict):
        return {}
    names: dict[str, str] = {}
    owners: set[str] = set()
    numbered = sorted((number, name) for name in raw if isinstance(name, str) and (number := number_of(name)))
    for _, name in numbered:
        uid = raw[name]
        if isinstance(uid, str) and uid not in owners:
            names[name] = uid
            owners.add(uid)
    return names


def numbers_on_disk(series_dir: Path) -> set[int]:
    """Numbers of the pseudonyms that files under ``series_dir`` are named by (whatever
    wrote them: an earlier run whose manifest is gone or of an older version)."""
    try:
        entries = [p.name for p in series_dir.iterdir()]
    except OSError:
        return set()
    return {int(m.group(1)) for n in entries if (m := _FILE.match(n))}


def assign_names(uids: Iterable[str], known: Mapping[str, str], series_dir: Path) -> dict[str, str]:
    """The pseudonym -> UID map for a run over ``uids``: ``known`` (the manifest's map) plus
    a new name for each UID without one, numbered in sorted-UID order from above the highest
    number in ``known`` or on disk (see the module docstring)."""
    names = dict(known)
    owned = set(names.values())
    fresh = sorted(set(uids) - owned)
    if not fresh:
        return names
    taken = {n for n in (number_of(name) for name in names) if n is not None} | numbers_on_disk(series_dir)
    start = max(taken, default=0)
    for offset, uid in enumerate(fresh, start=1):
        names[pseudonym(start + offset)] = uid
    return names


def names_by_uid(names: Mapping[str, str]) -> dict[str, str]:
    """UID -> pseudonym (``names`` holds each UID once, see `valid_names`)."""
    return {uid: name for name, uid in names.items()}
