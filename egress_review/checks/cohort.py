"""A dataset's patients, counted from its DICOM headers and its clinical tables (leaks18, leaks19).

A share that no output states the whole of ("Overall, 6.1 % withdrew" of 33 patients) needs
the cohort's size; the platform keeps none per dataset, so it is counted in the identifier
pass (`identifiers.dataset_patients`). A patient is a set of the identifiers they go by:

* a DICOM header's ``PatientID``, joined with another patient's ``PatientID`` where its
  ``OtherPatientIDs`` or ``OtherPatientIDsSequence`` names it (the header says the two are one
  person). An other-ID that is no patient's ID joins nothing: copied headers carry stale
  ones (pydicom's ``CT_small.dcm`` lists ``ABCD1234``), which would make 33 patients one;
* a sidecar clinical table's patient-id columns (`PATIENT_ID_COLUMNS`: ``patient_id``,
  ``subject_id``, ``mrn``...): each row's IDs are one person, so a table that lists a
  PatientID beside an MRN joins them, and a table keyed by the DICOM PatientIDs adds only the
  patients it has without images. A table that shares no ID with the headers (or, without
  DICOM, with the largest table) is left out (`Cohort`).

What cannot be done honestly: one person under two IDs that nothing in the dataset links is
two people, and a table keyed by another number than the headers adds none of its patients
(it may be the same people, or others). The cohort is then too large or too small, and a
share of it reads as no whole count (the check misses) or another (a share flagged for the
reviewers, never a block). docs/egress-checks.md says so.
"""

from __future__ import annotations

from collections.abc import Iterable

from egress_review.checks.tables import header_matches

Patients = frozenset[frozenset[str]]
"""A cohort: each patient as the set of IDs they go by."""

# a sidecar column naming a patient (its normalised header, globs)
PATIENT_ID_COLUMNS = (
    "patient_id",
    "patientid",
    "patient",
    "subject_id",
    "subjectid",
    "subject",
    "participant_id",
    "participant",
    "case_id",
    "caseid",
    "mrn",
    "nhs_number",
    "nhs_no",
)


class Cohort:
    """Patients as sets of the IDs they go by, from sources: the DICOM headers (one source)
    and each clinical table (one source a table). A source whose IDs share none with the
    cohort's first source (the headers, else the largest table) is left out: it may list the
    same people under another key (a pathology number beside the hospital's), and counting
    them again would make the cohort too large as surely as leaving them out may make it too
    small; a table keyed by the headers' PatientIDs joins, with the patients it has that have
    no images."""

    def __init__(self) -> None:
        self._headers: list[tuple[str, list[str]]] = []
        self._tables: list[list[list[str]]] = []

    def add_header(self, patient_id: str, others: Iterable[str]) -> None:
        """A DICOM header's patient, and the other IDs it says they go by: joined with those
        that are some header's own PatientID."""
        if patient_id.strip():
            self._headers.append((patient_id.strip(), [o.strip() for o in others if o.strip()]))

    def add_table(self, rows: Iterable[Iterable[str]]) -> None:
        """A clinical table's patient-id cells, a row a person."""
        table = [ids for row in rows if (ids := [i.strip() for i in row if i and i.strip()])]
        if table:
            self._tables.append(table)

    def patients(self) -> Patients:
        sources: list[set[str]] = [{i for row in t for i in row} for t in self._tables]
        headers = {patient_id for patient_id, _ in self._headers}
        joined = _Joined()
        for patient_id, others in self._headers:
            joined.add([patient_id, *(o for o in others if o in headers)])
        if headers:
            included = set(headers)
        elif sources:
            largest: set[str] = max(sources, key=len)
            included = set(largest)
        else:
            return frozenset()
        left = list(range(len(self._tables)))
        grown = True
        while grown:
            grown = False
            for t in list(left):
                if sources[t] & included:
                    included |= sources[t]
                    for row in self._tables[t]:
                        joined.add(row)
                    left.remove(t)
                    grown = True
        return joined.groups()


def merge(cohorts: Iterable[Patients]) -> Patients:
    """Several datasets' patients: one person in two of them (by an ID they share) once."""
    joined = _Joined()
    for patients in cohorts:
        for ids in patients:
            joined.add(sorted(ids))
    return joined.groups()


class _Joined:
    """Union-find over IDs: each `add` says its IDs are one person."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def _root(self, key: str) -> str:
        parent = self._parent.setdefault(key, key)
        while parent != key:
            grand = self._parent[parent]
            self._parent[key] = grand
            key, parent = parent, grand
        return key

    def add(self, keys: list[str]) -> None:
        if not keys:
            return
        first = self._root(keys[0])
        for key in keys[1:]:
            other = self._root(key)
            if other != first:
                self._parent[other] = first

    def groups(self) -> Patients:
        groups: dict[str, set[str]] = {}
        for key in list(self._parent):
            groups.setdefault(self._root(key), set()).add(key)
        return frozenset(frozenset(g) for g in groups.values())


def patient_columns(header: list[str]) -> list[int]:
    """The columns of a sidecar table that name a patient (matched as a policy's column globs
    are, `tables.header_matches`)."""
    return [i for i, h in enumerate(header) if header_matches(h, PATIENT_ID_COLUMNS)]
