"""The DAC review panel (``/panel``): queue, request view with previews, blind vote form.

Server-rendered with Jinja2 (autoescaped) and no scripts at all, so the Content Security
Policy can forbid every script. Every route depends on `panel_principal` (dac or admin, deny
by default); every post checks the CSRF token. Admins see everything but vote on nothing:
they can only settle a conflicted request, as the workflow allows. All decisions go through
`egress_review.workflow`, the same code as the API, so the panel cannot bend a rule.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from egress_review import expiry, outputnames, workflow
from egress_review.panel import fragments, preview, signin_words
from egress_review.panel.auth import (
    ENDED,
    ID_TOKEN_COOKIE,
    PANEL_ROLES,
    STALE_FORM,
    TOKEN_COOKIE,
    SessionEnded,
    clear_cookies,
    csrf_token,
    form_is_stale,
    panel_principal,
    session_end_text,
    set_csrf_cookie,
    set_token_cookie,
)
from egress_review.panel.cards import file_cards, noting_refusals
from egress_review.panel.oidc_session import SIGNED_OUT_STATE, end_session_url
from egress_review.panel.templating import PACKAGE_DIR, templates
from tre import committees
from tre.api.bounds import RowId
from tre.api.deps import DbSession, get_settings_dep, principal_from_token
from tre.api.problems import Problem
from tre.audit import record_event
from tre.auth import revocation
from tre.auth.oidc import OidcError
from tre.auth.pasted import pasted_token
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import NotFound, TreError
from tre.jobs.output_handles import handle_key
from tre.states import EgressState, ReviewStage
from tre.store.db import settle
from tre.store.models import Dataset, Job, Review

STATIC_FILES = {"panel.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends `Origin: null` with the page's own form posts,
    # so the origin check had to let `null` through, and with it posts from sandboxed frames
    # and data: documents. Same-origin: our posts carry our origin; nothing leaves for others.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
QUEUE_FILTERS = {
    "open": ("awaiting_review", "conflicted"),
    "awaiting_review": ("awaiting_review",),
    "conflicted": ("conflicted",),
    "approved": ("approved",),
    "rejected": ("rejected",),
    "blocked": ("blocked",),
    "withdrawn": ("withdrawn",),
    "expired": ("expired",),
    "all": (),
    # Open requests that expire within TRE_EGRESS_EXPIRY_WARN_DAYS (the queue's route).
    "expiring": ("awaiting_review", "conflicted"),
    # The viewer's own history: every request they voted on or resolved, any state.
    "mine": (),
}

router = APIRouter(prefix="/panel", include_in_schema=False)

Reviewer = Annotated[Principal, Depends(panel_principal)]


def reviewer_or_ended(request: Request, session: DbSession) -> Principal | str:
    """The signed-in reviewer, or why their session ended (a key of `ENDED`): a vote or a
    resolution posted after the end is answered with what it carried, not a bare redirect."""
    try:
        return panel_principal(request, session)
    except SessionEnded as exc:
        if exc.ended == "invalid":  # a forged, foreign or ownerless token: nothing is answered
            raise
        return exc.ended


ReviewerOrEnded = Annotated[Principal | str, Depends(reviewer_or_ended)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    csrf, fresh = csrf_token(request)
    shared = {"csrf": csrf, "session_ends": session_end_text(request)}
    response = templates.TemplateResponse(request, name, {**shared, **context}, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    if fresh:
        set_csrf_cookie(response, request, csrf)
    return response


def problem_page(request: Request, problem: dict[str, Any]) -> Response:
    """Any error under ``/panel`` as a page for a browser (`tre.api.problems`): the problem's
    title and detail (server words, autoescaped), never a JSON document or a traceback."""
    principal = getattr(request.state, "principal", None)
    return render(request, "error.html", {"principal": principal, "problem": problem})


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------------- sign-in


def _login_context(settings: Settings, error: str | None = None) -> dict[str, Any]:
    """The sign-in page offers the OIDC provider when one is configured, the paste-a-token
    form only for the embedded issuer, and neither for an OIDC issuer without a panel client."""
    return {
        "error": error,
        "principal": None,
        "paste_token": settings.auth_mode == "embedded",
        "oidc_provider": _provider_name(settings),
    }


def _provider_name(settings: Settings) -> str | None:
    return (settings.oidc_provider_name or settings.oidc_issuer) if settings.panel_oidc_enabled else None


def _ended_words(settings: Settings, ended: str, lost: bool) -> str:
    """Why the previous session ended and what to do now, in one message (`signin_words`)."""
    paste = settings.auth_mode == "embedded"
    return signin_words.session_ended(ENDED[ended], lost, paste, _provider_name(settings))


@router.get("/login")
def login_page(
    request: Request,
    settings: SettingsDep,
    ended: str = "",
    lost: str = "",
    out: str = "",
    state: str = "",
) -> HTMLResponse:
    """The sign-in page; ``ended`` (set by `panel_principal`'s redirect) names why the previous
    session ended, ``lost`` that the form it refused was not recorded, and ``out`` that the
    reviewer has just pressed Sign out (`logout`: before, the page came back without a word,
    and a reviewer could not tell whether the Sign out had worked). Only fixed words are
    shown: the query string itself is never echoed. ``state`` is the provider's hand-back
    after an RP-initiated logout (`oidc_session.SIGNED_OUT_STATE`), which means ``out``."""
    context = _login_context(settings)
    if ended in ENDED:
        context["ended"] = _ended_words(settings, ended, lost == "1")
    elif out == "1" or state == SIGNED_OUT_STATE:
        paste = settings.auth_mode == "embedded"
        context["notice"] = signin_words.signed_out(paste, _provider_name(settings))
    return render(request, "login.html", context)


@router.post("/login")
def login(
    request: Request,
    # Ends before the answer (see egress_review.panel.oidc): a refused sign-in's 401/403 is
    # audited by the refusal middleware, which must not wait on this request's writer lock.
    session: DbSession,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=8192)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=64)] = "",
) -> Response:
    if form_is_stale(request, csrf):  # a sign-in page left open in another tab: say so, ask again
        error = (
            "this sign-in page was out of date (you signed in or out in another tab): paste your token again"
        )
        return render(request, "login.html", _login_context(settings, error), status=403)
    if settings.auth_mode != "embedded":
        error = "pasting a token is only for the embedded issuer; sign in with your identity provider"
        return render(request, "login.html", _login_context(settings, error), status=403)
    token = pasted_token(token)  # as copied from a curl line or a quoted string, too
    try:
        principal = principal_from_token(request, token, session)
    except Problem as exc:
        error = signin_words.refused_token(exc.type_, exc.detail)
        return render(request, "login.html", _login_context(settings, error), status=401)
    if not principal.has(*PANEL_ROLES):
        error = signin_words.wrong_role(principal.roles)
        return render(request, "login.html", _login_context(settings, error), status=403)
    claims = request.app.state.verifier.verify(token)
    # A session starts here, as with the provider's sign-in (`auth.login`, via panel-oidc):
    # every sign-in is an entry, not only the token's first use in the hour.
    record_event(
        session,
        actor=principal.user_id,
        action="auth.login",
        details={"token_id": principal.token_id, "roles": sorted(principal.roles), "via": "panel-token"},
    )
    # Back to the request whose vote the ended session refused; only a request page of ours.
    back = next_page if NEXT_PAGE.fullmatch(next_page) else "/panel/"
    response = see_other(back)
    set_token_cookie(response, request, token, int(claims["exp"]))
    # A new CSRF value at sign-in: a value planted before login is worthless afterwards.
    set_csrf_cookie(response, request, secrets.token_urlsafe(32))
    return response


@router.post("/logout")
def logout(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Sign the session's token out (refused from now on, wherever a copy of the cookie is)
    and forget it here; with an OIDC provider that offers it, end the session there
    too (RP-initiated logout), through a page that moves on by itself: the form's CSP allows
    posts to this origin only, which Chromium also applies to a redirect after the post."""
    # An out-of-date form of our own page (a tab opened before the last sign-in) still signs
    # out: refusing it left a reviewer signed in who had pressed Sign out.
    form_is_stale(request, csrf)
    had_session = bool(request.cookies.get(TOKEN_COOKIE))
    _revoke_session_token(request, session)
    end_session = _provider_logout_url(request, settings, had_session)
    if end_session:
        response: Response = render(
            request,
            "signed_out.html",
            {"principal": None, "next": end_session, "provider": settings.oidc_issuer},
        )
    else:
        # The sign-in page says it is done, and how to review again (newcomer round 21).
        response = see_other("/panel/login?out=1" if had_session else "/panel/login")
    clear_cookies(response, request)
    return response


def _revoke_session_token(request: Request, session: Session) -> None:
    """Revoke the cookie's token when it is still a valid one (an expired, forged or already
    revoked cookie has nothing left to sign out)."""
    token = request.cookies.get(TOKEN_COOKIE)
    if not token:
        return
    try:
        principal = principal_from_token(request, token, session)
    except Problem:
        return
    claims = request.app.state.verifier.verify(token)
    revocation.revoke(session, principal.user_id, token, float(claims["exp"]), via="panel")


def _provider_logout_url(request: Request, settings: Settings, had_session: bool) -> str | None:
    provider = getattr(request.app.state.verifier, "provider", None)
    if not settings.panel_oidc_enabled or provider is None:
        return None
    try:
        discovery = provider.discovery()
    except OidcError:
        return None  # signed out here; the provider's session ends on its own
    return end_session_url(settings, discovery, request.cookies.get(ID_TOKEN_COOKIE), had_session)


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise Problem(404, "Not found", f"no static file {name!r}", "not-found")
    body = (PACKAGE_DIR / "static" / name).read_bytes()
    return Response(
        body,
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


# ---------------------------------------------------------------------------- queue


QUEUE_PAGE = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
QUEUE_SORTS = ("oldest", "newest")
QUEUE_AGES = (1, 7, 14, 30)  # "older than N days" choices


def _queue_int(raw: str, default: int, lo: int, hi: int) -> int:
    """A queue parameter as a number in range; anything else is the default (the queue's
    links and form make only good values; a hand-edited URL gets the plain queue)."""
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if lo <= value <= hi else default


@router.get("/")
def queue(
    request: Request,
    principal: Reviewer,
    session: DbSession,
    settings: SettingsDep,
    show: str = "open",
    dataset: str = "",
    older_than: str = "",
    sort: str = "",
    page: str = "1",
) -> HTMLResponse:
    """The queue: a state tab (or ``expiring``: open requests that expire within
    TRE_EGRESS_EXPIRY_WARN_DAYS; ``mine``: the viewer's own votes and resolutions), narrowed
    by dataset and age, sorted, 50 a page."""
    if show not in QUEUE_FILTERS:
        show = "open"
    now = datetime.now(UTC)
    warn_before = expiry.made_before_for_expiring(
        settings.egress_open_ttl_days, settings.egress_expiry_warn_days, now
    )
    datasets = _queue_datasets(session, principal)
    older = _queue_int(older_than, 0, 1, 3650) if older_than else 0
    narrow = workflow.RequestFilter(
        states=QUEUE_FILTERS[show],
        dataset_id=dataset if dataset in datasets else None,
        made_before=now - timedelta(days=older) if older else None,
        reviewed_by=principal.user_id if show == "mine" else None,
    )
    if show == "expiring":
        # No window (TTL 0, or no warning days): an empty tab, not every open request.
        cut = warn_before if warn_before is not None and settings.egress_expiry_warn_days > 0 else EPOCH
        narrow = replace(narrow, made_before=min(cut, narrow.made_before or cut))
    # The oldest open request first: a queue is served in arrival order (so is an expiring one).
    default_sort = "oldest" if show in ("open", "awaiting_review", "conflicted", "expiring") else "newest"
    sort = sort if sort in QUEUE_SORTS else default_sort
    total = workflow.count_requests(session, principal, narrow)
    pages = max(1, -(-total // QUEUE_PAGE))
    page_no = _queue_int(page, 1, 1, pages)
    reqs = workflow.list_requests(
        session,
        principal,
        narrow=narrow,
        oldest_first=sort == "oldest",
        limit=QUEUE_PAGE,
        offset=(page_no - 1) * QUEUE_PAGE,
    )
    facts = workflow.viewer_facts(session, reqs, principal)  # no statements per row
    rows = [_queue_row(session, settings, r, principal, facts, now) for r in reqs]
    expiring = 0
    if warn_before is not None and settings.egress_expiry_warn_days > 0:
        expiring = workflow.count_requests(
            session,
            principal,
            workflow.RequestFilter(states=workflow.OPEN_STATES, made_before=warn_before),
        )
    keep = {"show": show, "dataset": narrow.dataset_id or "", "older_than": older or "", "sort": sort}
    return render(
        request,
        "queue.html",
        {
            "principal": principal,
            "rows": rows,
            "show": show,
            "filters": list(QUEUE_FILTERS),
            "datasets": sorted(datasets),
            "ages": QUEUE_AGES,
            "sorts": QUEUE_SORTS,
            "chosen": keep,
            "page": page_no,
            "pages": pages,
            "total": total,
            "first_row": (page_no - 1) * QUEUE_PAGE + 1,
            "page_link": partial(_queue_link, keep),
            "expiring": expiring,
            "warn_days": settings.egress_expiry_warn_days,
        },
    )


def _queue_link(keep: dict[str, Any], **change: Any) -> str:
    """The queue's URL with the current choices, some changed (Jinja2 escapes it in href)."""
    params = {k: v for k, v in (keep | change).items() if v not in ("", None)}
    return "/panel/?" + urlencode(params)


def _queue_datasets(session: Session, principal: Principal) -> frozenset[str]:
    """The datasets the viewer may filter by: their committees' (all for admins and auditors)."""
    if principal.has(*workflow.OVERSIGHT_ROLES):
        return frozenset(session.scalars(select(Dataset.id)))
    return committees.reviewer_dataset_ids(session, principal.user_id)


QUEUE_FILE_NAMES = 4


def _age(created: datetime | None, now: datetime) -> str:
    if created is None:
        return ""
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)  # the store keeps UTC
    minutes = int((now - created).total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def _queue_row(
    session: Session,
    settings: Settings,
    req: Any,
    principal: Principal,
    facts: workflow.ViewerFacts,
    now: datetime,
) -> dict[str, Any]:
    """What a reviewer needs to pick a request: who, why, which files, what the checks found,
    how old, when it expires, and how the viewer voted on it."""
    keys_dir = settings.keys_dir
    ttl = settings.egress_open_ttl_days
    row = workflow.summary_view(session, req, principal, keys_dir=keys_dir, facts=facts, open_ttl_days=ttl)
    expires = workflow.expires_at(req, ttl)
    left = (expires - now) if expires is not None else None
    mine = [r for r in req.reviews if r.reviewer_id == principal.user_id]
    member = req.project_id in facts.member_of
    handles = outputnames.HashView(req.job_id, handle_key(keys_dir), keyed=True)
    # A member sees placeholders, in handle order (by path, the order would spell the names).
    files = sorted(req.files, key=lambda f: handles.handle(f.sha256) if member else f.path)
    created = (
        req.created_at.replace(tzinfo=UTC)
        if req.created_at and req.created_at.tzinfo is None
        else req.created_at
    )
    row |= {
        # Within their own project a reviewer is a researcher: no names (they are conflicted).
        "file_names": [handles.placeholder(f.sha256) if member else f.path for f in files[:QUEUE_FILE_NAMES]],
        "more_files": max(0, len(files) - QUEUE_FILE_NAMES),
        "flagged": sum(1 for f in files if f.outcome == "flag"),
        "blocked": sum(1 for f in files if f.outcome == "block"),
        "age": _age(created, datetime.now(UTC)),
        "created_utc": created.strftime("%Y-%m-%d %H:%M UTC") if created else "",
        "created_iso": created.isoformat() if created else "",
        "expires_utc": expires.strftime("%Y-%m-%d %H:%M UTC") if expires else "",
        "expires_iso": expires.isoformat() if expires else "",
        "expires_in": _age(now, now + left) if left is not None and left.total_seconds() > 0 else "",
        "expires_soon": left is not None and left <= timedelta(days=settings.egress_expiry_warn_days),
        "my_decision": my_decision(mine),
    }
    return row


def my_decision(mine: list[Review]) -> str:
    """The viewer's own votes on a request in a DAC member's words ("your vote: approve",
    "your resolution: reject"), not the review stage's internal name ("review: approve")."""
    words: dict[str, str] = {ReviewStage.review: "your vote", ReviewStage.resolution: "your resolution"}
    ordered = sorted(mine, key=lambda r: r.stage != ReviewStage.review)
    return "; ".join(f"{words.get(r.stage, 'your decision')}: {r.vote}" for r in ordered)


# ---------------------------------------------------------------------------- request


def _request_page(
    request: Request,
    session: Session,
    settings: Settings,
    principal: Principal,
    request_id: str,
    error: str | None = None,
    status: int = 200,
    kept: dict[str, str] | None = None,
) -> HTMLResponse:
    req = workflow.visible_request(session, request_id, principal)
    # A reviewer conflicted on the request (e.g. in its project) gets no previews, and a member
    # of its project the names as a researcher sees them.
    conflicted = workflow.review_conflict(session, req, principal) is not None
    names = outputnames.request_name_view(session, settings, principal, req.job_id) if conflicted else None
    view = workflow.request_view(session, req, principal, names, keys_dir=settings.keys_dir)
    # A card shows why its staged copy cannot be read instead of raising: the refusal's entry
    # is handed to the unit of work's end all the same (`cards.noting_refusals`).
    opening = partial(workflow.open_file_for_review, session, settings, principal, req)
    opener = noting_refusals(session, opening)
    cards = file_cards(req, view["files"], dict(request.query_params), opener, previews=not conflicted)
    if error is None:
        workflow.record_review_view(session, principal, req)
    job = session.get(Job, req.job_id)  # what produced the files: image and the exact code
    # Said before anyone votes: an open request checked under policies changed since.
    drift = (
        workflow.policy_drift(session, req, settings.resolved_policies_dir)
        if req.state in workflow.OPEN_STATES
        else None
    )
    return render(
        request,
        "request.html",
        {
            "principal": principal,
            "r": view,
            "cards": cards,
            "error": error,
            "notice": request.query_params.get("done"),
            "job": job,
            "policy_drift": drift,
            "kept": kept,
        },
        status=status,
    )


@router.get("/requests/{request_id}")
def request_detail(
    request: Request, request_id: str, principal: Reviewer, session: DbSession, settings: SettingsDep
) -> HTMLResponse:
    return _request_page(request, session, settings, principal, request_id)


@router.get("/requests/{request_id}/files/{file_id}/render.png")
def render_file(
    request_id: str, file_id: RowId, principal: Reviewer, session: DbSession, settings: SettingsDep
) -> Response:
    """A PNG rendering of an image or of a DICOM slice, decoded and re-encoded server-side.

    The rendering depends only on the staged bytes, so it is cached by their SHA-256 once the
    copy has been read and re-verified (a request's images are fetched by every reviewer)."""
    _, f, fh = workflow.open_for_review(session, settings, principal, request_id, file_id)
    with fh:
        png = fragments.renders.get_or_render(
            ("png", fragments.FRAGMENT_VERSION, f.sha256), partial(_png_of, fh, f.path)
        )
    return Response(png, media_type="image/png", headers=SECURITY_HEADERS)


def _png_of(fh: Any, path: str) -> tuple[bytes, bool]:
    data = fh.read()
    kind = preview.sniff(data[:4096], path)
    try:
        if kind == "dicom":
            return preview.render_dicom(data), True
        if kind == "nifti":
            return preview.render_nifti(data), True
        if kind == "image":
            return preview.render_image(data), True
    except preview.PreviewError as exc:
        raise Problem(422, "Cannot render", str(exc), "render-failed") from exc
    raise Problem(415, "No image preview", f"{path} is not an image, NIfTI or DICOM file", "no-preview")


@router.get("/requests/{request_id}/disclosure.json")
def disclosure(request_id: str, principal: Reviewer, session: DbSession, settings: SettingsDep) -> Response:
    """The decided request's disclosure record, as the researcher and auditors get it (a
    member of the request's project gets it as a researcher does: withheld names masked)."""
    req = workflow.visible_request(session, request_id, principal)
    record = workflow.logged_record(session, principal, req)
    if workflow.review_conflict(session, req, principal) is not None:
        names = outputnames.request_name_view(session, settings, principal, req.job_id)
        hashes = outputnames.hash_view(
            session,
            settings.keys_dir,
            principal,
            req.project_id,
            req.job_id,
            released=req.state == "approved",
        )
        record = outputnames.masked_record(record, list(req.files), names, hashes)
    body = json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False)
    return Response(
        body,
        media_type="application/json",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="disclosure-{req.id}.json"',
        },
    )


def _act(
    request: Request,
    session: Session,
    settings: Settings,
    principal: Principal,
    request_id: str,
    action: str,
    vote: str,
    comment: str,
    seen_state: str = "",
) -> Response:
    """Record a vote or resolution; a refusal shows the request again with the reason and
    what the reviewer wrote, so nothing typed is lost. A request whose state changed since
    the page was opened (``seen_state``: withdrawn, expired, decided, conflicted) is refused
    in those words before the workflow is asked."""
    kept = _kept_form(vote, comment)
    try:
        req = workflow.visible_request(session, request_id, principal)
        if seen_state in SEEN_STATES and seen_state != req.state:
            return _request_page(
                request,
                session,
                settings,
                principal,
                request_id,
                error=(
                    f"This request changed while you were reviewing it: it was "
                    f"{seen_state.replace('_', ' ')} when you opened it and is {req.state.replace('_', ' ')} "
                    f"now. Your {'vote' if action == 'vote' else 'resolution'} was not recorded; "
                    "what you wrote is kept below."
                ),
                status=409,
                kept=kept,
            )
        if action == "vote":
            workflow.cast_vote(
                session,
                principal,
                request_id,
                vote=vote,
                comment=comment,
                policies_dir=settings.resolved_policies_dir,
            )
        else:
            workflow.resolve(
                session,
                principal,
                request_id,
                decision=vote,
                comment=comment,
                policies_dir=settings.resolved_policies_dir,
            )
    except TreError as exc:
        # Rolled back whole; a refusal's entry (a self-review...) is written after the request's
        # unit of work ends, by `tre.api.deps.get_session` (kept on disk if the store cannot).
        settle(session, exc, refusals_written_later=True)
        if isinstance(exc, NotFound):
            raise
        return _request_page(
            request,
            session,
            settings,
            principal,
            request_id,
            error=f"{exc.title}: {exc.detail}. Nothing was recorded; what you wrote is kept below.",
            status=exc.status,
            kept=kept,
        )
    return see_other(f"/panel/requests/{request_id}?done={'voted' if action == 'vote' else 'resolved'}")


def _kept_form(choice: str, comment: str) -> dict[str, str]:
    """What the reviewer wrote, for the form shown again after a refusal: the comment, and
    the choice only if it is one of the form's own (a forged value is not put back)."""
    return {"comment": comment, "choice": choice if choice in workflow.VOTES else ""}


SEEN_STATES = frozenset(s.value for s in EgressState)
MAX_COMMENT = 10_000


def _decision_post(
    request: Request,
    principal: Principal | str,
    session: Session,
    settings: Settings,
    request_id: str,
    action: str,
    choice: str,
    comment: str,
    csrf: str,
    seen_state: str,
) -> Response:
    """A vote or resolution form. The form's fields are all optional and bounded here, after
    the session was looked at (`reviewer_or_ended`), so nobody learns anything from form
    validation before signing in; then the CSRF check, before anything is echoed."""
    stale = form_is_stale(request, csrf[:200])
    if len(comment) > MAX_COMMENT:
        raise Problem(
            422,
            "Invalid request",
            f"the comment is longer than {MAX_COMMENT} characters; shorten it",
            "invalid-request",
        )
    choice = choice if choice in workflow.VOTES else choice[:16]
    if isinstance(principal, str):
        return _kept_on_sign_in(request, settings, principal, request_id, choice, comment)
    if stale:  # our own page's form, from before the reviewer signed in again: nothing acted on
        return _request_page(
            request,
            session,
            settings,
            principal,
            request_id,
            error=STALE_FORM.format(what="vote" if action == "vote" else "resolution"),
            status=403,
            kept=_kept_form(choice, comment),
        )
    return _act(request, session, settings, principal, request_id, action, choice, comment, seen_state[:32])


def _kept_on_sign_in(
    request: Request, settings: Settings, ended: str, request_id: str, choice: str, comment: str
) -> HTMLResponse:
    """The sign-in page for a vote or resolution sent after the session ended: why, that it
    was not recorded, and what the reviewer wrote (to copy into the form after signing in).
    Only the CSRF-checked post of our own page gets here; the comment is autoescaped."""
    context = _login_context(settings)
    context |= {
        "ended": _ended_words(settings, ended, lost=True),
        "kept_comment": comment,
        "kept_choice": choice if choice in workflow.VOTES else "",
        "back_to": f"/panel/requests/{request_id}" if REQUEST_ID.fullmatch(request_id) else "/panel/",
    }
    return render(request, "login.html", context, status=401)


REQUEST_ID = re.compile(r"[0-9a-f]{32}")
NEXT_PAGE = re.compile(r"/panel/requests/[0-9a-f]{32}")


@router.post("/requests/{request_id}/vote")
def vote(
    request: Request,
    request_id: str,
    principal: ReviewerOrEnded,
    session: DbSession,
    settings: SettingsDep,
    vote: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    seen_state: Annotated[str, Form()] = "",
) -> Response:
    return _decision_post(
        request, principal, session, settings, request_id, "vote", vote, comment, csrf, seen_state
    )


@router.post("/requests/{request_id}/resolve")
def resolve(
    request: Request,
    request_id: str,
    principal: ReviewerOrEnded,
    session: DbSession,
    settings: SettingsDep,
    decision: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    seen_state: Annotated[str, Form()] = "",
) -> Response:
    return _decision_post(
        request, principal, session, settings, request_id, "resolve", decision, comment, csrf, seen_state
    )
