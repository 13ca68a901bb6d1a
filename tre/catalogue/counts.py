"""Count queries answered from the node's catalogue, under each dataset's policy.

This is what the federation agent calls for a researcher's federated search, and what
``POST /api/v1/catalogue/counts`` serves on the node itself. Only datasets whose policy
lists them take part; each answers with figures released by its own policy
(tre.catalogue.disclosure); every query, with its answer's suppression flags, is written to
the node's signed audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.audit import record_event
from tre.catalogue.cache import current_facts
from tre.catalogue.disclosure import release_subjects_and_studies
from tre.catalogue.extract import DatasetFacts
from tre.catalogue.models import CountAnswer, CountQuery, DatasetCount
from tre.config import Settings
from tre.errors import TreError
from tre.policy import AppliedPolicy, policies_for_datasets
from tre.store.base import new_id, utcnow
from tre.store.models import Dataset

COUNT_QUERY_ACTION = "catalogue.count_query"
# Who asked at the hub, as the federation agent names them: recorded, so kept to a plain shape.
REQUESTER_RE = re.compile(r"^[A-Za-z0-9._@:-]{1,128}$")


@dataclass(frozen=True)
class ListedDataset:
    """A dataset the catalogue describes, with its policy and current facts."""

    dataset: Dataset
    policy: AppliedPolicy
    facts: DatasetFacts


def listed_datasets(session: Session, settings: Settings) -> list[ListedDataset]:
    """Every dataset whose policy lists it, with fresh facts; a policy that cannot be loaded
    stops the caller (`PolicyUnavailable`): no figure is released under unknown rules."""
    out = []
    for dataset in session.scalars(select(Dataset).order_by(Dataset.id)):
        (applied,) = policies_for_datasets([dataset], settings.resolved_policies_dir)
        if not applied.policy.catalogue.listed:
            continue
        out.append(ListedDataset(dataset, applied, current_facts(session, settings, dataset)))
    return out


def true_counts(facts: DatasetFacts, modality: str | None, body_part: str | None) -> tuple[int, int]:
    """(subjects, studies) with at least one series of ``modality`` and ``body_part``
    (``None``: any)."""
    subjects: set[int] = set()
    studies: set[int] = set()
    for series in facts.series:
        if modality is not None and series.modality != modality:
            continue
        if body_part is not None and series.body_part != body_part:
            continue
        subjects.add(series.subject)
        studies.add(series.study)
    return len(subjects), len(studies)


def count_dataset(listed: ListedDataset, query: CountQuery) -> DatasetCount:
    """One dataset's released answer to ``query``."""
    dataset = listed.dataset
    if query.condition is not None and query.condition not in (dataset.conditions or []):
        subjects = studies = 0  # withheld below like any small count: a zero is not shown
    else:
        subjects, studies = true_counts(listed.facts, query.modality, query.body_part)
    min_count, round_to = listed.policy.policy.catalogue_limits()
    shown_subjects, shown_studies = release_subjects_and_studies(subjects, studies, min_count, round_to)
    return DatasetCount(
        dataset_id=dataset.id,
        subjects=shown_subjects,
        subjects_suppressed=shown_subjects is None,
        studies=shown_studies,
        studies_suppressed=shown_studies is None,
        min_count=min_count,
        round_to=round_to,
        policy=listed.policy.name,
        policy_digest=listed.policy.policy.digest,
    )


def _audit_details(answer: CountAnswer, requester: str | None) -> dict[str, object]:
    return {
        "query_id": answer.query_id,
        "query": answer.query.model_dump(),
        "requester": requester,
        "answers": [
            {
                "dataset": d.dataset_id,
                "subjects": d.subjects,
                "subjects_suppressed": d.subjects_suppressed,
                "studies": d.studies,
                "studies_suppressed": d.studies_suppressed,
                "min_count": d.min_count,
                "round_to": d.round_to,
                "policy": d.policy,
                "policy_digest": d.policy_digest,
            }
            for d in answer.datasets
        ],
    }


def answer_count_query(
    session: Session,
    settings: Settings,
    query: CountQuery,
    *,
    actor: str = "federation",
    requester: str | None = None,
) -> CountAnswer:
    """Per-dataset counts of subjects and studies matching ``query``, small counts withheld
    and the rest rounded by each dataset's policy; the query is written to the audit log in
    the caller's transaction (commit it to make the record durable).

    ``actor`` is who asked this node (a signed-in user, or the federation agent); the agent
    passes the hub's researcher as ``requester`` (a name the node records, not trusts).
    """
    if requester is not None and not REQUESTER_RE.match(requester):
        raise TreError("requester must be 1-128 characters of letters, digits, '.', '_', '@', ':' or '-'")
    answer = CountAnswer(
        query_id=new_id(),
        query=query,
        answered_at=utcnow(),
        datasets=[count_dataset(listed, query) for listed in listed_datasets(session, settings)],
    )
    record_event(session, actor=actor, action=COUNT_QUERY_ACTION, details=_audit_details(answer, requester))
    return answer


def answers_by_dataset(answer: CountAnswer) -> dict[str, DatasetCount]:
    """The answer's figures keyed by dataset id (for tables and tests)."""
    return {d.dataset_id: d for d in answer.datasets}
