"""Count queries answered from the node's catalogue, under each dataset's policy."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tre.catalogue.models import CountAnswer, CountQuery
from tre.config import Settings


def answer_count_query(session: Session, settings: Settings, query: CountQuery) -> CountAnswer:
    """Per-dataset counts of subjects and studies matching ``query``, small counts withheld
    and the rest rounded by each dataset's policy; the query is written to the audit log."""
    raise NotImplementedError("interface only: implemented in the next commit on h/catalogue")
