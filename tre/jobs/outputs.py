"""Recording a finished job's output files: relative path, size and SHA-256.

The hash recorded here is what the egress airlock later binds a release to, so it is taken
by the control plane from the files on disk, never reported by the job itself.

The tree was written by research code and is walked with `tre.executors.fstree` (no
recursion, no symlinks followed, any depth). Only regular files whose path can be stored and
shown safely are recorded: valid UTF-8 in NFC form, no control or bidi-format characters,
no space but U+0020 and none leading or trailing a part, at most
`MAX_PATH_CHARS` characters, at most `fstree.MAX_DEPTH` levels deep, and no more than
`fstree.MAX_ENTRIES` of them. Anything else is skipped (and counted), so a strange name can neither crash the
worker nor reach a terminal, a header or the database in a form that breaks them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from tre.config import Settings
from tre.errors import PolicyUnavailable
from tre.executors import fstree
from tre.plural import count
from tre.policy import JobRules, policies_for_datasets
from tre.store.base import utcnow
from tre.store.models import Dataset, Job, JobOutput

log = logging.getLogger(__name__)

# JobOutput.path and EgressFile.path are String(1024).
MAX_PATH_CHARS = 1024
# Control characters (newlines, escape sequences), format characters (bidi overrides that
# make "txt.exe" read "exe.txt"), line/paragraph separators and lone surrogates.
_UNSHOWABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _sha256_at(dir_fd: int, name: str, chunk: int = 1 << 20) -> tuple[int, str]:
    """Size and SHA-256 of a regular file, opened without following a symlink."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{name!r} is not a regular file")
        digest = hashlib.sha256()
        size = 0
        while block := fh.read(chunk):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def recordable_path(rel: str) -> bool:
    """Whether a relative output path can be stored, listed and released as it is.

    Beyond names that cannot be shown at all, names that cannot be told from another name
    when shown are refused: a part with a leading or trailing space (``manifest.json `` beside
    ``manifest.json``), a space other than U+0020 (a no-break space), or a name not in Unicode
    NFC form (``résumé.csv`` spelt with a combining accent reads exactly like the composed
    one): a reviewer or researcher reading the listing, the panel or a disclosure record
    would take one file for the other."""
    if not rel or len(rel) > MAX_PATH_CHARS:
        return False
    if rel.isascii() and rel.isprintable():  # the common case, without a look at each character
        return all(part == part.strip() for part in rel.split("/"))
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 decodes to lone surrogates
        return False
    if any(unicodedata.category(c) in _UNSHOWABLE or (c.isspace() and c != " ") for c in rel):
        return False
    if not unicodedata.is_normalized("NFC", rel):
        return False
    return all(part == part.strip() for part in rel.split("/"))


@dataclass
class OutputScan:
    files: list[tuple[str, int, str]] = field(default_factory=list)
    skipped: int = 0


def scan_output_tree(
    root: Path, max_files: int = fstree.MAX_ENTRIES, max_name_chars: int = MAX_PATH_CHARS
) -> OutputScan:
    """Regular files under ``root`` as (relative path, size, sha256), and how many were skipped.

    ``max_files`` and ``max_name_chars`` come from the datasets' policies: names (and sizes)
    are chosen by the job, so how many can be recorded bounds a channel. When more files
    could be recorded than ``max_files``, the ones nearest the top of the tree are (by depth,
    then path, part by part; `NearestTheTop`): a job's summaries (a manifest, a results
    table) sit at the top and its per-item files below, and recording the first files of the
    depth-first walk dropped a cohort's ``manifest.json`` behind its first 200 per-series
    files. The files recorded are listed in walk order, as before.

    One walk hashes the files while they fit, as before; only a tree with more files than
    that is walked a second time, to hash the chosen files the first walk had passed."""
    scan = OutputScan()
    if not root.is_dir() or root.is_symlink():
        return scan
    limit = min(max_files, fstree.MAX_ENTRIES)
    nearest = NearestTheTop(limit)
    hashed: dict[str, tuple[int, str]] = {}  # walk order
    for entry in fstree.walk(root):
        if not stat.S_ISREG(entry.st.st_mode):
            continue
        rel = _recordable_relative(entry, max_name_chars)
        if rel is None:
            scan.skipped += 1
            continue
        if len(hashed) < limit:
            try:
                hashed[rel] = _sha256_at(entry.dir_fd, entry.name)
            except OSError:
                scan.skipped += 1
                continue
        nearest.add(entry, rel)
    chosen = nearest.chosen()
    scan.skipped += nearest.seen - len(chosen)
    if chosen.issubset(hashed):
        scan.files = [(rel, size, digest) for rel, (size, digest) in hashed.items() if rel in chosen]
    else:
        for entry in fstree.walk(root):
            if not stat.S_ISREG(entry.st.st_mode):
                continue
            rel = _recordable_relative(entry, max_name_chars)
            if rel is None or rel not in chosen:
                continue
            try:
                size, digest = hashed[rel] if rel in hashed else _sha256_at(entry.dir_fd, entry.name)
            except OSError:
                scan.skipped += 1
                chosen.discard(rel)
                continue
            scan.files.append((rel, size, digest))
            chosen.discard(rel)
        scan.skipped += len(chosen)  # gone between the two walks
    if scan.skipped:
        log.warning(
            "%s under %s not recorded (odd names, too deep or too many)",
            count(scan.skipped, "output file"),
            root,
        )
    return scan


def _recordable_relative(entry: fstree.Entry, max_name_chars: int) -> str | None:
    """The entry's relative path if it may be recorded (depth, length and name), else None."""
    if entry.depth > fstree.MAX_DEPTH:
        return None
    rel = entry.relative()
    return rel if len(rel) <= max_name_chars and recordable_path(rel) else None


class NearestTheTop:
    """Of the files added, the ``limit`` of least depth, then by path part by part: an order
    that depends on nothing but the names, so the choice is the same for the same tree.
    Holds at most 2 x ``limit`` paths whatever the tree's size."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.seen = 0
        self._kept: list[tuple[int, list[str], str]] = []

    def add(self, entry: fstree.Entry, rel: str) -> None:
        self.seen += 1
        self._kept.append((entry.depth, [*entry.parents, entry.name], rel))
        if len(self._kept) >= 2 * max(self.limit, 1):
            self._trim()

    def _trim(self) -> None:
        self._kept.sort()
        del self._kept[self.limit :]

    def chosen(self) -> set[str]:
        self._trim()
        return {rel for _, _, rel in self._kept}


def scan_outputs(root: Path) -> list[tuple[str, int, str]]:
    """Regular files under ``root`` as (relative path, size, sha256); links are not followed."""
    return scan_output_tree(root).files


@dataclass(frozen=True)
class RecordedOutput:
    """One output as recorded (the row's values)."""

    path: str
    size: int
    sha256: str


def record_outputs(session: Session, job_id: str, root: Path) -> list[RecordedOutput]:
    return record_scanned(session, job_id, scan_output_tree(root))


def record_scanned(session: Session, job_id: str, scan: OutputScan) -> list[RecordedOutput]:
    """Replace the job's recorded outputs by ``scan``'s, in one bulk INSERT: a cohort job has
    tens of thousands, and an ORM object per row cost most of the recording's time."""
    session.execute(delete(JobOutput).where(JobOutput.job_id == job_id))
    rows = [RecordedOutput(p, s, h) for p, s, h in scan.files]
    if rows:
        now = utcnow()
        session.execute(
            insert(JobOutput),
            [
                {"job_id": job_id, "path": r.path, "size": r.size, "sha256": r.sha256, "created_at": now}
                for r in rows
            ],
        )
    return rows


def recording_limits(session: Session, settings: Settings, job: Job) -> tuple[int, int]:
    """How many output files a job may have recorded, and how long their paths may be: the
    strictest over its datasets' policies, its inputs' lineage included (the defaults when a
    policy cannot be read)."""
    datasets = list(session.scalars(select(Dataset).where(Dataset.id.in_(job.governing_dataset_ids))))
    try:
        rules = [a.policy.job for a in policies_for_datasets(datasets, settings.resolved_policies_dir)]
    except PolicyUnavailable:  # the worker must finish the job whatever the policy
        rules = [JobRules()]
    return min(r.max_output_files for r in rules), min(r.max_output_name_chars for r in rules)
