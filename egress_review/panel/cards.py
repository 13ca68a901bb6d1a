"""The file cards of the request page: each file's checks, reviewer-only values and preview,
rendered once per (request, file, content, view) and served from `fragments` afterwards.

Cards do not depend on who is looking (every reviewer sees the same checks and preview), so
they can also be rendered ahead of the first view, when the checks have just run
(`warm_request`): the first reviewer then gets the page as fast as the second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO

from markupsafe import Markup
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from egress_review import workflow
from egress_review.panel import fragments, preview
from egress_review.panel.templating import templates
from egress_review.staging import StagingError, open_verified
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import TreError
from tre.store.db import new_session, note_refusals
from tre.store.models import EgressFile, EgressRequest

log = logging.getLogger(__name__)

INLINE_PASSED_UP_TO = 10  # larger requests show a passed file's preview on demand
# Only to build the staff view of a request's files before any reviewer looks (warm_request);
# never a principal any decision, read or audit entry is made for.
_CARD_VIEWER = Principal(user_id="tre:panel-cards", roles=frozenset({"dac"}))

# Opens a file's staged copy, re-verified against its hash; raises when it does not match.
Opener = Callable[[EgressFile], BinaryIO]


@dataclass
class FileCard:
    """One file on the request page: its view dict, its findings, and its rendered card."""

    file: dict[str, Any]
    findings: list[dict[str, Any]]
    deferred: bool
    html: Markup = Markup("")


def noting_refusals(session: Session, opener: Opener) -> Opener:
    """``opener``, handing the entry of a refusal it raises (a staged copy that no longer
    matches its hash: `TreError.refusals`) to ``session``'s unit of work, which writes it after
    it ends (`tre.store.db.note_refusals`): `_preview` catches the error and renders the card
    with the reason instead, so nothing else would."""

    def open_noting(row: EgressFile) -> BinaryIO:
        try:
            return opener(row)
        except TreError as exc:
            note_refusals(session, exc)
            raise

    return open_noting


def query_int(query: dict[str, str], name: str) -> int | None:
    try:
        return int(query[name]) if name in query else None
    except ValueError:
        return None


def file_cards(
    req: EgressRequest,
    files: list[dict[str, Any]],
    query: dict[str, str],
    opener: Opener,
    previews: bool = True,
) -> list[FileCard]:
    """Every file's card, from the fragment cache when this view of it was rendered before.

    A 50-file request is mostly passed files: reading, verifying and rendering each of them on
    every page view made the page slow and long. In large requests they stay collapsed with a
    link instead, and each card is rendered once per process.

    ``previews=False`` (a reviewer conflicted on the request): every card collapsed, never read
    from the cache, which holds previews another reviewer's view rendered.
    """
    rows = {x.id: x for x in req.files}
    cards = []
    for f in files:
        deferred = (
            f["outcome"] == "pass"
            and len(files) > INLINE_PASSED_UP_TO
            and query.get("preview") != str(f["id"])
        )
        page = query_int(query, f"page{f['id']}")
        column_page = query_int(query, f"cols{f['id']}")
        card = FileCard(f, [c for c in f["checks"] if c.get("outcome") != "pass"], deferred)
        build = partial(_render_card, req.id, partial(opener, rows[f["id"]]), f, deferred, page, column_page)
        if not previews:
            card.html, _ = _render_card(req.id, partial(opener, rows[f["id"]]), f, True, page, column_page)
        else:
            key = fragments.fragment_key(req.id, f, (deferred, page, column_page))
            card.html = fragments.fragments.get_or_render(key, build)
        cards.append(card)
    return cards


def _render_card(
    request_id: str,
    open_file: Callable[[], BinaryIO],
    f: dict[str, Any],
    deferred: bool,
    page: int | None,
    column_page: int | None,
) -> tuple[Markup, bool]:
    """A file's card as HTML, and whether it may be cached: not when the staged copy could not
    be read or verified (the next view must meet, and audit, the failure again)."""
    item: dict[str, Any] = {"deferred": True} if deferred else _preview(open_file, f, page, column_page)
    html = templates.env.get_template("_file.html").render(f=f, p=item, request_id=request_id)
    # S704: the output of an autoescaping template, not raw input.
    return Markup(html), not item.get("unreadable", False)  # noqa: S704


def _preview(
    open_file: Callable[[], BinaryIO], f: dict[str, Any], page: int | None, column_page: int | None
) -> dict[str, Any]:
    """What the card of a file shows below its checks: read from the staged copy (re-verified)."""
    item: dict[str, Any] = {"kind": "binary", "error": None, "tables": [], "deferred": False}
    try:
        fh = open_file()
    except (TreError, StagingError) as exc:
        item["error"] = exc.detail if isinstance(exc, TreError) else str(exc)
        item["unreadable"] = True
        return item
    with fh:
        data = fh.read(preview.MAX_TABLE_BYTES + 1) if f["size"] > 64 << 20 else fh.read()
    kind = preview.sniff(data[:4096], f["path"])
    item["kind"] = kind
    highlights = preview.highlighted_cells(f["checks"])
    focus = preview.focus_of(highlights)
    if kind == "table":
        item["tables"] = [preview.table(data, page, column_page, focus)]
    elif kind in ("json", "xlsx", "parquet"):
        try:
            item["tables"] = preview.structured_tables(data, kind, page, column_page, focus)
        except preview.PreviewError as exc:
            item["error"] = str(exc)
        if kind == "json" and not item["tables"]:
            item["kind"] = "text"
            item["text"], item["truncated"] = preview.text_excerpt(data)
    elif kind == "text":
        item["text"], item["truncated"] = preview.text_excerpt(data)
    elif kind == "dicom":
        item["header"] = preview.dicom_header(data, preview.flagged_keys(f["checks"]))
    for t in item["tables"]:
        t.highlights = highlights if len(item["tables"]) == 1 else set()
    return item


def warm_after_commit(session: Session, engine: Engine, settings: Settings, request_id: str) -> None:
    """Pre-render the request's cards once ``session`` commits it (the API's create route):
    before that, another session would not see the request; after a rollback there is none."""

    def warm(_: Session) -> None:
        warm_request(engine, settings, request_id)

    event.listen(session, "after_commit", warm, once=True)


def warm_request(engine: Engine, settings: Settings, request_id: str) -> int:
    """Render the first view of every card of a request whose checks just ran, so no
    reviewer waits for it. Returns how many cards
    were rendered; a file whose staged copy fails verification is left for a reviewer's view,
    which refuses and audits it. Never raises: a warm-up is an optimisation only."""
    try:
        session = new_session(engine, read_only=True)
        try:
            req = workflow.load_request(session, request_id)
            view = workflow.request_view(session, req, _CARD_VIEWER, keys_dir=settings.keys_dir)
            before = fragments.fragments.misses
            file_cards(req, view["files"], {}, lambda row: open_verified(settings.staging_dir, row.sha256))
            return fragments.fragments.misses - before
        finally:
            session.close()
    except Exception:  # noqa: BLE001 - the page renders on first view instead
        log.warning("could not pre-render the review cards of request %s", request_id, exc_info=True)
        return 0
