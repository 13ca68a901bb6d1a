"""The extracted facts of each dataset, kept in the database and refreshed when the data changes.

A query must not read every DICOM header each time, yet must not answer from facts about
files that have since changed. So the facts are stored with the folder's fingerprint
(paths, sizes, modification times; no file is read to compute it); the fingerprint is
checked again when the stored one is older than ``catalogue_recheck_s`` and the facts are
extracted anew when it differs.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tre.catalogue.extract import DatasetFacts, extract_facts, fingerprint
from tre.config import Settings
from tre.errors import TreError
from tre.store.base import utcnow
from tre.store.models import Dataset, DatasetCatalogue


class CatalogueUnavailable(TreError):
    """A listed dataset's folder cannot be read: no figure is given rather than a stale one."""

    status = 503
    title = "Catalogue unavailable"
    slug = "catalogue-unavailable"


def _unreadable(dataset: Dataset) -> CatalogueUnavailable:
    # The dataset id only: its host path is not for researchers' eyes.
    return CatalogueUnavailable(f"dataset {dataset.id!r} cannot be read; ask the node's admin")


def current_facts(
    session: Session, settings: Settings, dataset: Dataset, *, force: bool = False
) -> DatasetFacts:
    """The dataset's facts, re-extracted first when its folder changed (or ``force``).

    Runs in the caller's transaction: the refreshed row commits with it.
    """
    row = session.get(DatasetCatalogue, dataset.id)
    now = utcnow()
    if force or row is None:
        return refresh_facts(session, dataset)
    if now - row.checked_at < timedelta(seconds=settings.catalogue_recheck_s):
        return DatasetFacts.from_json(row.facts)
    if _fingerprint(dataset) == row.fingerprint:
        row.checked_at = now
        return DatasetFacts.from_json(row.facts)
    return refresh_facts(session, dataset)


def _fingerprint(dataset: Dataset) -> str:
    try:
        return fingerprint(Path(dataset.path))
    except (OSError, TreError) as exc:
        raise _unreadable(dataset) from exc


def refresh_facts(session: Session, dataset: Dataset) -> DatasetFacts:
    """Extract the dataset's facts now and store them with the folder's fingerprint (taken
    first, so a file changed during the extraction makes the next check extract again).
    Registration calls this, so the first query does not have to."""
    print_now = _fingerprint(dataset)
    try:
        facts = extract_facts(Path(dataset.path))
    except (OSError, TreError) as exc:
        raise _unreadable(dataset) from exc
    now = utcnow()
    values = {"fingerprint": print_now, "facts": facts.to_json(), "extracted_at": now, "checked_at": now}
    row = session.get(DatasetCatalogue, dataset.id)
    if row is None:
        try:
            with session.begin_nested():  # a concurrent query may have stored it first
                session.add(DatasetCatalogue(dataset_id=dataset.id, **values))
            return facts
        except IntegrityError:
            row = session.get(DatasetCatalogue, dataset.id, populate_existing=True)
            if row is None:
                raise
    for key, value in values.items():
        setattr(row, key, value)
    session.flush()
    return facts
