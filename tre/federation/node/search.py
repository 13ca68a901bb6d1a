"""A node's answer to a federated count query: only what `tre.catalogue.counts` answers
(counts per dataset, small counts withheld and the rest rounded by the dataset's policy,
the query logged in the node's audit log), or "no answer"."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from tre.catalogue.counts import answer_count_query
from tre.catalogue.models import CountQuery
from tre.config import Settings
from tre.errors import TreError
from tre.federation.wire import SearchAnswerIn

log = logging.getLogger(__name__)


def answer_counts(
    session: Session, settings: Settings, query: dict[str, Any], asked_by: str
) -> SearchAnswerIn:
    """Answer for this node; its audit log records the query, the agent and the hub's researcher."""
    try:
        answer = answer_count_query(
            session, settings, CountQuery.model_validate(query), actor="federation-agent", requester=asked_by
        )
    except (ValidationError, TreError, NotImplementedError) as exc:
        log.info("count query not answered: %s", exc)
        return SearchAnswerIn(state="no_answer")
    return SearchAnswerIn(state="answered", answer=answer.model_dump(mode="json"))
