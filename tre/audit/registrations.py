"""A dataset's folder is used only as its signed registration names it.

A dataset's folder is fixed when an admin registers it (`tre.registry`, audited as
``admin.dataset_registered`` with the path); nothing in tre changes it afterwards. The
``datasets`` row can still be edited by anyone who can write the database, with no key, and
the log still verifies (tamper round 19): a path moved to another folder was mounted into a
job admitted for the dataset (data the project holds no grant for), and a path moved to an
empty folder left the airlock's checks without the dataset's patient identifiers. So the
worker before it starts a job, and the airlock before it checks or screens anything of a
job, compare each dataset's path with its signed registration (`tre.audit.attest`) and
refuse on a difference, with a CRITICAL line on ``tre.audit.alert``.

The policy is not compared: moving a dataset to another policy is an operator's step with
no command of its own yet (the airlock's `policy_drift` refuses approvals under rules that
changed since the checks), so a registration's policy is not its current one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.orm import Session

from tre.audit.attest import signed_entries
from tre.errors import Conflict
from tre.store.models import Dataset

ALERT = logging.getLogger("tre.audit.alert")
ALERT.addHandler(logging.NullHandler())


def unlogged(session: Session, dataset: Dataset) -> str | None:
    """Why ``dataset``'s row is not what its newest signed registration says (None: it is)."""

    def about(body: dict[str, object]) -> bool:
        return isinstance(body.get("details"), dict)

    entries = signed_entries(session, "admin.dataset_registered", None, about, dataset_id=dataset.id)
    if not entries:
        return f"dataset {dataset.id} has no signed registration"
    details = entries[-1].fields.get("details")
    if not isinstance(details, dict) or details.get("path") != dataset.path:
        return f"dataset {dataset.id}'s path is not the one it was registered with"
    return None


def require_registered(session: Session, datasets: Iterable[Dataset]) -> None:
    """Raise 409 ``dataset-not-as-registered`` unless every dataset is as signed."""
    for dataset in datasets:
        why = unlogged(session, dataset)
        if why is not None:
            ALERT.critical("%s: the database was changed behind the audit log", why)
            raise Conflict(
                f"{why} in the audit log; an admin must compare it with the log (tre audit search "
                f"--dataset {dataset.id} --action admin.dataset_registered)",
                slug="dataset-not-as-registered",
                title="Dataset not as registered",
            )
