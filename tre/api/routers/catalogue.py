"""The node's dataset catalogue (DCAT-AP JSON-LD) and count queries (docs/catalogue.md).

Reading the catalogue is open to every signed-in user; asking counts, which are recorded in
the audit log one by one, to researchers and admins. Both may refresh a dataset's cached
facts when its folder changed, so both run in writing transactions.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from tre.api.deps import DbSession, any_role, get_settings_dep, require_roles, writes_on_read
from tre.auth.principal import Principal
from tre.catalogue.counts import answer_count_query
from tre.catalogue.dcat import JSONLD_MEDIA_TYPE, build_catalogue
from tre.catalogue.models import CountAnswer, CountQuery
from tre.config import Settings

router = APIRouter(prefix="/api/v1", tags=["catalogue"])
readers = any_role()
askers = require_roles("researcher", "admin")

CATALOGUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A JSON-LD document: one dcat:Catalog with its dcat:Dataset entries.",
    "required": ["@context", "@id", "@type", "dcat:dataset"],
    "properties": {
        "@context": {"type": "object"},
        "@id": {"type": "string"},
        "@type": {"const": "dcat:Catalog"},
        "dct:title": {"type": "string"},
        "dcat:dataset": {"type": "array", "items": {"type": "object"}},
    },
}


class JsonLdResponse(JSONResponse):
    media_type = JSONLD_MEDIA_TYPE


@router.get(
    "/catalogue",
    response_class=JsonLdResponse,
    responses={
        200: {
            "description": "The node's catalogue (DCAT-AP / HealthDCAT-AP shaped JSON-LD).",
            "content": {JSONLD_MEDIA_TYPE: {"schema": CATALOGUE_SCHEMA}},
        }
    },
)
@writes_on_read  # refreshes the cached facts of a dataset whose folder changed
def get_catalogue(
    session: DbSession,
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> JsonLdResponse:
    """Every listed dataset with its figures released under its own policy."""
    return JsonLdResponse(build_catalogue(session, settings))


@router.post("/catalogue/counts", response_model=CountAnswer)
def post_count_query(
    session: DbSession,
    query: CountQuery,
    p: Principal = Depends(askers),
    settings: Settings = Depends(get_settings_dep),
) -> CountAnswer:
    """Subjects and studies per dataset matching modality, body part and condition; figures
    under a dataset's threshold are withheld (``null``), the rest rounded. Audited."""
    return answer_count_query(session, settings, query, actor=p.user_id)
