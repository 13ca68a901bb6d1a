"""The source data's own identifiers, and finding them again in outputs.

A generic name detector would flag every author in a citation; the identifiers that matter
are the ones in *this* dataset's DICOM headers. They are gathered once per request from the
headers (pixels never read) and matched token by token, case-insensitively: a patient name
``DOE^JANE`` is found as "Jane Doe", "doe_jane.png" or "JANE".
"""

from __future__ import annotations

import copy
import csv
import fnmatch
import io
import os
import re
import struct
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError

from egress_review.checks import standard_phrases
from egress_review.checks.cohort import Cohort, Patients, patient_columns
from egress_review.checks.dates import find_dates
from egress_review.checks.tables import header_matches
from tre.policy import Policy, TextRules

PERSON_NAME_KEYWORDS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "ResponsiblePerson",
)
ID_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "MedicalRecordLocator",
    "AdmissionID",
    "ServiceEpisodeID",
    "StudyID",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
)
FREE_KEYWORDS = ("PatientAddress", "PatientTelephoneNumbers", "PatientBirthDate")
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# Exam dates identify as much as a birth date (HIPAA Safe Harbor lists all dates of service).
DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
SEQUENCE_KEYWORDS = ("OtherPatientIDsSequence",)
HEADER_TAGS = [
    *PERSON_NAME_KEYWORDS,
    *ID_KEYWORDS,
    *FREE_KEYWORDS,
    *UID_KEYWORDS,
    *DATE_KEYWORDS,
    *SEQUENCE_KEYWORDS,
]
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
SIDECAR_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".parquet", ".pq")
MAX_SIDECAR_BYTES = 64 * 1024 * 1024
MAX_HEADER_CHARS = 1024 * 1024  # a sidecar's header line is read up to this many characters

_TOKEN = re.compile(r"[0-9a-z\u00c0-\uffff]+(?:[.\-_][0-9a-z\u00c0-\uffff]+)*")
_SPLIT = re.compile(r"[\s^=,;/\\|]+")
_WORD = re.compile(r"[0-9a-z\u00c0-\uffff]+")
_A = r"(?![0-9a-z\u00c0-\uffff])"
_GAP = r"[^0-9a-z\u00c0-\uffff]+"
_DICOM_DATE = re.compile(r"(18|19|20|21)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _values(ds: Dataset, keyword: str) -> Iterator[str]:
    if keyword not in ds:
        return
    value = ds.data_element(keyword)
    if value is None or value.value is None:
        return
    raw = value.value
    items = raw if isinstance(raw, list | tuple | pydicom.multival.MultiValue) else [raw]
    for item in items:
        if isinstance(item, bytes):
            item = item.decode("latin-1", errors="replace")
        text = str(item).strip()
        if text:
            yield text


def identifiers_from_dataset(ds: Dataset) -> set[str]:
    """Every identifying value in one header, with person names also split into components."""
    found: set[str] = set()
    for kw in PERSON_NAME_KEYWORDS:
        for name in _values(ds, kw):
            found.add(name)
            found.update(p for p in _SPLIT.split(name) if p)
    for kw in (*ID_KEYWORDS, *UID_KEYWORDS, *FREE_KEYWORDS, *DATE_KEYWORDS):
        found.update(_values(ds, kw))
    for item in ds.get("OtherPatientIDsSequence", None) or []:
        found.update(_values(item, "PatientID"))
    return found


# What pydicom raises on corrupt files. It parses lazily, so these also surface while values
# are read; unknown VRs raise NotImplementedError (a RuntimeError), and BytesLengthException
# derives from Exception directly. Listed, not caught blindly, so programming errors surface.
MALFORMED_DICOM: tuple[type[Exception], ...] = (
    InvalidDicomError,
    BytesLengthException,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    KeyError,
    TypeError,
    IndexError,
    struct.error,
)
_CacheKey = tuple[str, int | None, tuple[int, int, int], tuple[str, ...]]
# a dataset's identifiers and (a whole scan's) patients, kept together: one scan gives both, so
# neither is scanned again while the other is cached (leaks19)
_CACHE: OrderedDict[_CacheKey, tuple[frozenset[str], Patients | None]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_DATASETS = 16


def _listing(root: Path) -> tuple[list[Path], tuple[int, int, int]]:
    """Every file under ``root`` (sorted) and a signature: count, total size, newest mtime."""
    if root.is_file():
        st = root.stat()
        return [root], (1, st.st_size, st.st_mtime_ns)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset path {root} does not exist")
    files: list[Path] = []
    total = newest = 0
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(directory) / name
            try:
                st = path.stat()
            except OSError:
                continue
            files.append(path)
            total += st.st_size
            newest = max(newest, st.st_mtime_ns)
    return files, (len(files), total, newest)


def date_variants(value: str) -> list[str]:
    """A DICOM date (YYYYMMDD) as people and programs write it: 1962-03-15, 15/03/1962, 15 March 1962."""
    m = re.fullmatch(r"(19\d\d|20\d\d)(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])", value.strip())
    if not m:
        return []
    y, mo, d = m.groups()
    month = MONTHS[int(mo) - 1]
    return [
        f"{y}-{mo}-{d}", f"{d}/{mo}/{y}", f"{mo}/{d}/{y}", f"{d}.{mo}.{y}", f"{y}/{mo}/{d}",
        f"{d}-{mo}-{y}", f"{y}.{mo}.{d}", f"{int(d)} {month} {y}", f"{month} {int(d)} {y}",
        f"{int(d)} {month[:3]} {y}", f"{month[:3]} {int(d)} {y}", f"{d}-{month[:3]}-{y}",
    ]  # fmt: skip


def sidecar_identifiers(path: Path, columns: Iterable[str], cohort: Cohort | None = None) -> set[str]:
    """Values of identifier columns (policy globs, e.g. ``mrn``) in one table of a dataset:
    CSV/TSV, or an XLSX workbook (every sheet) or Parquet file (read by openpyxl, pyarrow).
    With ``cohort``, each row's patient-id columns are added to it as one person (leaks19: a
    clinical table's patients are the dataset's too), from the same read."""
    patterns = tuple(columns)
    if (not patterns and cohort is None) or path.stat().st_size > MAX_SIDECAR_BYTES:
        return set()
    try:
        if not any(_wanted(h, patterns, cohort) for h in _sidecar_headers(path)):
            return set()  # leaks20: no row of a table without such a column is read
        tables = _sidecar_tables(path)
    except Exception:  # noqa: BLE001 - an unreadable sidecar adds no identifiers, as an unreadable DICOM
        return set()
    found: set[str] = set()
    for header_cells, rows in tables:
        wanted = [i for i, h in enumerate(header_cells) if header_matches(h, patterns)]
        for row in rows:
            for i in wanted:
                if i < len(row) and row[i].strip():
                    found |= _sidecar_value(row[i].strip())
        people = patient_columns(header_cells) if cohort is not None else []
        if cohort is not None and people:
            cohort.add_table([row[i] for i in people if i < len(row)] for row in rows)
    return found


def _wanted(header: list[str], patterns: tuple[str, ...], cohort: Cohort | None) -> bool:
    """Whether a sidecar table's header has an identifier column or, counting a cohort, a
    patient-id column."""
    return any(header_matches(h, patterns) for h in header) or (
        cohort is not None and bool(patient_columns(header))
    )


def _sidecar_headers(path: Path) -> list[list[str]]:
    """The header row of each table in a sidecar, read without its rows (leaks20): a dataset's
    tables of measurements, up to `MAX_SIDECAR_BYTES` each, were read whole for patient
    columns they do not have. A CSV/TSV's first line, a Parquet file's schema, a workbook's
    first non-empty row of each sheet."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return [list(pq.read_schema(path).names)]
    if suffix == ".xlsx":
        import openpyxl

        from egress_review.checks.table_readers import MAX_SHEETS, cell_text

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            return [
                _first_row(ws.iter_rows(values_only=True), cell_text) for ws in wb.worksheets[:MAX_SHEETS]
            ]
        finally:
            wb.close()
    with path.open(encoding="utf-8-sig", newline="") as f:
        first = f.readline(MAX_HEADER_CHARS)
    return [next(csv.reader([first], delimiter=_delimiter(first)), [])]


def _delimiter(first_line: str) -> str:
    """A CSV's or a TSV's delimiter, by its first line (the header and the whole read agree)."""
    return "\t" if first_line.count("\t") > first_line.count(",") else ","


def _first_row(rows: Iterable[tuple[object, ...]], text: Callable[[object], str]) -> list[str]:
    for row in rows:
        cells = [text(v) for v in row]
        if any(c.strip() for c in cells):
            return cells
    return []


def _sidecar_tables(path: Path) -> list[tuple[list[str], list[list[str]]]]:
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".parquet", ".pq"):
        from egress_review.checks.table_readers import read_parquet, read_xlsx

        read = read_xlsx(path) if suffix == ".xlsx" else read_parquet(path)
        return [(rows[0], rows[1:]) for rows in read.tables.values() if rows]
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(text.split("\n", 1)[0]))
    header = next(reader, [])
    return [(header, list(reader))]


def _sidecar_value(value: str) -> set[str]:
    """A sidecar cell as identifiers: the value, its parts, and a date as YYYYMMDD."""
    found = {value}
    found.update(p for p in _SPLIT.split(value) if p and value.count(" ") < 4)
    digits = re.sub(r"\D", "", value)
    if len(digits) == 8 and re.fullmatch(r"\d{4}-\d\d-\d\d|\d\d/\d\d/\d{4}", value):
        found.add(digits if value[4] == "-" else digits[4:] + digits[2:4] + digits[:2])
    return found


def gather_identifiers(
    dataset_path: Path, max_files: int | None = None, identifier_columns: Iterable[str] = ()
) -> set[str]:
    """Patient names (and their parts), IDs, accession numbers and instance UIDs of a dataset.

    Reads only the header tags it needs (``specific_tags``, ``stop_before_pixels``): about
    3-5 ms per file. Results are cached per dataset folder and reused while its files' count,
    total size and newest mtime are unchanged, so a 100,000-file collection is parsed once
    per process rather than once per egress request. Unreadable files are skipped: datasets
    are validated at registration, and a missing identifier only weakens a check that the
    reviewers back up anyway.
    """
    root = Path(dataset_path).resolve()
    files, signature = _listing(root)
    columns = tuple(sorted(identifier_columns))
    key = (str(root), max_files, signature, columns)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return set(cached[0])
    return set(_scan(root, files, signature, max_files, columns)[0])


def dataset_patients(dataset_path: Path) -> Patients:
    """A dataset's patients, each the set of IDs they go by (`cohort.Cohort`): the DICOM
    headers' PatientIDs (joined with their OtherPatientIDs) and a clinical table's patient-id
    columns (leaks18, leaks19). A share of the cohort that no output states ("3.0 % relapsed"
    of 33 patients is 1) needs the whole it is a share of; the platform keeps no cohort size
    per dataset, so it is counted here, in the same header pass as the identifiers and cached
    with them: a dataset whose identifiers any whole scan cached is not scanned again."""
    root = Path(dataset_path).resolve()
    files, signature = _listing(root)
    with _CACHE_LOCK:
        for key, (_, patients) in reversed(_CACHE.items()):
            if key[0] == str(root) and key[2] == signature and patients is not None:
                _CACHE.move_to_end(key)
                return patients
    patients = _scan(root, files, signature, None, ())[1]
    assert patients is not None  # a whole scan counts them
    return patients


def _scan(
    root: Path,
    files: list[Path],
    signature: tuple[int, int, int],
    max_files: int | None,
    columns: tuple[str, ...],
) -> tuple[frozenset[str], Patients | None]:
    """One pass over a dataset's files: their identifiers, and (when every file was read) its
    patients; both cached under the scan's key."""
    found: set[str] = set()
    cohort = Cohort()
    for count, path in enumerate(files):
        if max_files is not None and count >= max_files:
            break
        if path.suffix.lower() in SIDECAR_SUFFIXES:
            found |= sidecar_identifiers(path, columns, cohort)
            continue
        if not _looks_like_dicom(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
            found |= identifiers_from_dataset(ds)
            _add_patient(cohort, ds)
        except MALFORMED_DICOM:
            continue  # pydicom parses lazily: a corrupt element fails here, not in dcmread
    identifiers = frozenset(found)
    patients = cohort.patients() if max_files is None else None
    with _CACHE_LOCK:
        _CACHE[(str(root), max_files, signature, columns)] = (identifiers, patients)
        while len(_CACHE) > CACHE_DATASETS:
            _CACHE.popitem(last=False)
    return identifiers, patients


def _add_patient(cohort: Cohort, ds: Dataset) -> None:
    """A header's PatientID, and the other IDs it says the same patient goes by."""
    others = list(_values(ds, "OtherPatientIDs"))
    for item in ds.get("OtherPatientIDsSequence", None) or []:
        others += _values(item, "PatientID")
    for patient_id in _values(ds, "PatientID"):
        cohort.add_header(patient_id, others)


def _is_word_char(ch: str) -> bool:
    return bool(ch) and _WORD.fullmatch(ch) is not None


def _occurrences(text: str, needle: str, pattern: _Phrase | None, limit: int) -> list[int]:
    """Offsets where ``needle`` (or ``pattern``, anchored at needle) occurs as a whole word.

    ``str.find`` runs at memory speed; a regex with a leading look-behind would test every
    position of a multi-megabyte log.
    """
    out: list[int] = []
    start = 0
    while len(out) < limit:
        off = text.find(needle, start)
        if off < 0:
            break
        start = off + 1
        if off > 0 and _is_word_char(text[off - 1]):
            continue
        if pattern is None:
            end = off + len(needle)
            if end < len(text) and _is_word_char(text[end]):
                continue
        elif not pattern.match(text, off):
            continue
        out.append(off)
    return out


# Readings that turn a word into another (reversed, ROT13) look for identifiers of this many
# letters and digits or more (round 21): of the 31,383 words found 3 times or more in
# Python's standard library and the benign log corpora, 22 % of those of 3 letters read
# reversed as another ("mid"/"dim", "der"/"red"), 2.9 % of 4 ("spam"/"maps"), 0.3 % of 5
# ("traps"/"spart") and 0.1 % of 6; a short name part turned is an ordinary word, not a
# disguise (benchmarks/log_benign_withholds.py: 20 of 120 traceback lines withheld).
MIN_TURNED_CHARS = 5


def _telling_digits(run: str, rules: TextRules) -> bool:
    """Whether the digit run of an ID with letters identifies alone: six digits or more, of
    which as many as an all-digit identifier needs are not leading zeros (round 21: the
    "0000123" of "PAT0000123" is the number 123, and "lr 0.000005" was withheld for
    "PAT0000005"; "0048213" of "MRN-0048213" is still one)."""
    least = rules.min_numeric_identifier_length
    return len(run) >= max(6, least) and len(run.lstrip("0")) >= least


def _distinctive(norm: str) -> bool:
    """Whether an identifier (lower case) has `MIN_TURNED_CHARS` letters and digits."""
    return sum(map(len, _WORD.findall(norm))) >= MIN_TURNED_CHARS


@dataclass(frozen=True)
class IdentifierHit:
    """One identifier found in text: which one (masked later), where."""

    identifier: str
    line: int


_DIGIT_IN_WORD = re.compile(r"[^\W\d_]\d|\d[^\W\d_]")  # a letter next to a digit in one word
_DIGIT_RUN = re.compile(r"\d+")


def _rarest(words: Iterable[str], counts: Counter[str]) -> str:
    """The word fewest identifiers share (ties: the first in order), to index one by."""
    return min(sorted(set(words)), key=counts.__getitem__)


_GAP_RUN = re.compile(_GAP)


@dataclass(frozen=True)
class _Phrase:
    """A phrase's words with any separator between them, matched word by word: compiling a
    regex per phrase cost milliseconds each (most of a dataset-scale screen's build)."""

    parts: tuple[str, ...]

    def match(self, text: str, pos: int) -> bool:
        """Whether the phrase stands at ``pos``, ending a word (what ``_GAP.join + _A`` did)."""
        for index, part in enumerate(self.parts):
            if index:
                gap = _GAP_RUN.match(text, pos)
                if gap is None:
                    return False
                pos = gap.end()
            if not text.startswith(part, pos):
                return False
            pos += len(part)
        return not _is_word_char(text[pos : pos + 1])


class IdentifierMatcher:
    """Case-insensitive, whole-token matching of a dataset's identifiers in text.

    Built for multi-megabyte logs: the text's distinct tokens are collected by one regex pass
    in C and intersected with the identifier set; only identifiers actually present are then
    located line by line.
    """

    def __init__(self, identifiers: Iterable[str], rules: TextRules, pseudonyms: Iterable[str] = ()) -> None:
        ignore = [i.lower() for i in rules.ignore_identifiers]
        pseudo = [re.compile(p, re.IGNORECASE) for p in pseudonyms]
        singles: dict[str, str] = {}
        joined: dict[str, str] = {}
        phrases: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        expanded: list[tuple[str, str]] = []
        for ident in identifiers:
            expanded.append((ident, ident))  # dates in other spellings: `find_dates` below
        for variant, ident in expanded:
            norm = variant.strip().lower()
            if not norm or any(fnmatch.fnmatchcase(norm, pattern) for pattern in ignore):
                continue
            if any(p.fullmatch(variant.strip()) for p in pseudo):
                continue  # a pseudonym the agreement assigned is not an identifier
            if norm.isdigit():
                if len(norm) < rules.min_numeric_identifier_length:
                    continue
            elif len(norm) < rules.min_identifier_length:
                continue
            if _WORD.fullmatch(norm):
                singles[norm] = ident
            elif _TOKEN.fullmatch(norm):
                joined[norm] = ident
                # "MRN-0048213" joined by the job as "MRN 0048213", "mrn_0048213" or
                # "MRN0048213": the same words with any separator, or none, are the identifier.
                words = tuple(_WORD.findall(norm))
                phrases.setdefault(words[0], []).append((words, ident))
                compact = "".join(words)
                if len(compact) >= max(6, rules.min_numeric_identifier_length):
                    singles.setdefault(compact, ident)
                # "MRN-0048213" written as its number alone: a long digit part of an ID that has
                # letters is as identifying as the whole (UIDs, all digits, share their roots
                # and are left out; short parts such as "77" or "1234" are everyday numbers).
                if any(w.isalpha() for w in words):
                    for word in words:
                        if word.isdigit() and _telling_digits(word, rules):
                            singles.setdefault(word, ident)
            else:
                words = tuple(_WORD.findall(norm))
                if len(words) == 1:
                    singles[words[0]] = ident
                elif words:
                    phrases.setdefault(words[0], []).append((words, ident))
            # "ACC558812" written as "558812" (redteam9): the long digit run inside a word with
            # letters is identifying alone, as the digit part of "MRN-0048213" is above.
            if _DIGIT_IN_WORD.search(norm) and any(c.isalpha() for c in norm) and "." not in norm:
                for run in _DIGIT_RUN.findall(norm):
                    if _telling_digits(run, rules):
                        singles.setdefault(run, ident)
        self.singles = singles
        # the shortest all-digit identifier: as many significant digits make a number one
        # (`egress_review.number_forms`)
        self.min_numeric = rules.min_numeric_identifier_length
        self.joined = joined
        self.phrases = phrases
        # Dates (birth, study) are also found in any written form by parsing (`checks.dates`).
        self.dates = {
            i.strip(): i for i in identifiers if rules.date_identifiers and _DICOM_DATE.fullmatch(i.strip())
        }
        self._index()

    def _index(self) -> None:
        """The lookup tables derived from ``singles``, ``joined`` and ``phrases``: built once
        here, and again for `turned`'s subset."""
        singles, phrases = self.singles, self.phrases
        # The all-digit ones, as numbers in other notations are compared with them
        # (`egress_review.number_forms`).
        self.digit_singles = frozenset(norm for norm in singles if norm.isdigit())
        # A name's single words that a tool's fixed phrase holds ("last" of "most recent call
        # last"): not hits inside that phrase (`standard_phrases`).
        self._phrase_words = frozenset(
            norm for norm in singles if norm.isalpha() and norm in standard_phrases.WORDS
        )
        # Identifiers with joiners (UIDs, "HOSP-77-1234") can sit inside longer tokens such as
        # file names, so they are searched by regex, but only those whose every word occurs.
        # Indexed by each one's rarest word among them: a dataset's UIDs share their roots, so
        # a search tests only those whose most telling word the text holds, not every UID of
        # the dataset (round 14b: every call was linear in the UIDs, and the log screen's
        # build, which asks once per identifier, was quadratic).
        self._joined_words = {norm: frozenset(_WORD.findall(norm)) for norm in self.joined}
        # Phrases likewise: keyed by their first word, every UID was under "1", and each search
        # of a text holding a "1" ("epoch 1") tested them all.
        counts = Counter(w for needed in self._joined_words.values() for w in needed)
        counts.update(w for entries in phrases.values() for parts, _ in entries for w in set(parts))
        self._joined_by_word: dict[str, list[str]] = {}
        for norm, needed in self._joined_words.items():
            self._joined_by_word.setdefault(_rarest(needed, counts), []).append(norm)
        self._phrases_by_word: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for entries in phrases.values():
            for parts, ident in entries:
                self._phrases_by_word.setdefault(_rarest(parts, counts), []).append((parts, ident))

    @cached_property
    def turned(self) -> IdentifierMatcher:
        """This matcher with only the identifiers of `MIN_TURNED_CHARS` letters and digits or
        more: what the readings that turn a word into another (reversed, ROT13) are matched
        with. A short identifier turned is an ordinary word too often: a name part "Mid" of
        pydicom's test files read reversed withheld every "size mismatch at dim 0" (round 21)."""
        sub = copy.copy(self)
        sub.__dict__.pop("turned", None)
        sub.singles = {n: i for n, i in self.singles.items() if _distinctive(n)}
        sub.joined = {n: i for n, i in self.joined.items() if _distinctive(n)}
        sub.phrases = {}
        for first, entries in self.phrases.items():
            kept = [(parts, ident) for parts, ident in entries if _distinctive("".join(parts))]
            if kept:
                sub.phrases[first] = kept
        sub._index()
        return sub

    def __bool__(self) -> bool:
        return bool(self.singles or self.joined or self.phrases or self.dates)

    def __len__(self) -> int:
        return len(self.singles) + len(self.joined) + sum(len(v) for v in self.phrases.values())

    def find(self, text: str, limit: int = 50) -> list[IdentifierHit]:
        """Identifiers in ``text``: whole tokens, their dot/dash/underscore parts, and phrases."""
        lower = text.lower()
        words = set(_WORD.findall(lower))
        located: list[tuple[int, str]] = []
        for norm in (n for w in words & self._joined_by_word.keys() for n in self._joined_by_word[w]):
            if self._joined_words[norm] <= words:
                located.extend((off, self.joined[norm]) for off in _occurrences(lower, norm, None, limit))
        spans: list[tuple[int, int]] | None = None
        for norm in words & self.singles.keys():
            found = _occurrences(lower, norm, None, limit)
            if norm in self._phrase_words:
                spans = standard_phrases.phrase_spans(lower) if spans is None else spans
                found = [off for off in found if not standard_phrases.inside(spans, off, off + len(norm))]
            located.extend((off, self.singles[norm]) for off in found)
        for rarest in words & self._phrases_by_word.keys():
            for parts, ident in self._phrases_by_word[rarest]:
                if all(p in words for p in parts):
                    rest = _Phrase(parts)
                    located.extend((off, ident) for off in _occurrences(lower, parts[0], rest, limit))
        if self.dates:
            located.extend((off, self.dates[value]) for value, off in find_dates(text, set(self.dates)))
        located.sort()
        hits: list[IdentifierHit] = []
        seen: set[tuple[str, int]] = set()
        line, pos = 1, 0
        for offset, ident in located:
            line += lower.count("\n", pos, offset)
            pos = offset
            if (ident, line) not in seen:
                seen.add((ident, line))
                hits.append(IdentifierHit(ident, line))
                if len(hits) >= limit:
                    break
        return hits


def matcher_for(policy: Policy, identifiers: Iterable[str]) -> IdentifierMatcher:
    """The matcher every output check uses: the policy's text rules and declared pseudonyms."""
    return IdentifierMatcher(identifiers, policy.text, policy.dicom.pseudonym_patterns)
