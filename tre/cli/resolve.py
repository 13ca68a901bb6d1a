"""Unique-prefix resolution of the ids the CLI takes (as git does for commits).

Every id a command prints can be given back whole or shortened to any prefix that only one
thing the caller can see starts with: job ids, egress request ids, grant ids, image digests.
A prefix of several is refused with one line naming the candidates; a prefix of nothing, or a
whole id, goes to the server as given, so an unknown id gets the server's own answer (and a
refusal never depends on what the listing happened to show).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from tre.cli.client import ApiClient, CliError

MIN_PREFIX = 4
HEX_ID_LEN = 32  # tre.store.base.new_id: uuid4().hex
DIGEST_HEX_LEN = 64
MAX_CANDIDATES_SHOWN = 8
_PAGE = 1000


def pick_unique(given: str, candidates: Iterable[str], what: str, full_len: int = HEX_ID_LEN) -> str:
    """The one candidate ``given`` is a prefix of, or ``given`` itself when it names none.

    A trailing ellipsis (how a narrow table may end a value) is ignored, so an id copied from
    an older screen still works when it is unique.
    """
    given = given.strip().rstrip("…")
    if len(given) >= full_len or len(given) < MIN_PREFIX:
        return given
    matches = sorted({c for c in candidates if c.startswith(given)})
    if len(matches) > 1:
        shown = ", ".join(matches[:MAX_CANDIDATES_SHOWN])
        more = (
            f" and {len(matches) - MAX_CANDIDATES_SHOWN} more" if len(matches) > MAX_CANDIDATES_SHOWN else ""
        )
        raise CliError(f"{given!r} matches {len(matches)} {what}s ({shown}{more}): give more characters")
    return matches[0] if matches else given


def _given(given: str, what: str) -> str:
    """``given`` without spaces; an empty id is refused here, in words: sent as it is, it
    would address the collection's own route and read as "no such API route"."""
    if not given.strip().rstrip("…"):
        raise CliError(f"no {what} id given: give its id or a unique prefix of it")
    return given


def _needs_listing(given: str, full_len: int) -> bool:
    given = given.strip().rstrip("…")
    return MIN_PREFIX <= len(given) < full_len


def _paged_ids(client: ApiClient, path: str, key: str, params: dict[str, Any] | None = None) -> list[str]:
    """Every ``key`` of a listing paged with limit/offset (the jobs listing)."""
    ids: list[str] = []
    offset = 0
    while True:
        page = client.get(path, params={**(params or {}), "limit": _PAGE, "offset": offset})
        ids += [str(row[key]) for row in page]
        if len(page) < _PAGE:
            return ids
        offset += _PAGE


def _resolver(
    fetch: Callable[[ApiClient], Iterable[str]], what: str, full_len: int = HEX_ID_LEN
) -> Callable[[ApiClient, str], str]:
    def resolve(client: ApiClient, given: str) -> str:
        given = _given(given, what)
        if not _needs_listing(given, full_len):
            return given.strip().rstrip("…")
        return pick_unique(given, fetch(client), what, full_len)

    return resolve


resolve_job_id = _resolver(lambda c: _paged_ids(c, "/api/v1/jobs", "id"), "job")
_HEX = re.compile(r"^[0-9a-f]+$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def resolve_input_job(client: ApiClient, given: str) -> str:
    """A job id for ``--input-job``: whole, or a unique prefix of a job the caller sees.

    Unlike the other ids this one travels inside a request body, whose schema takes whole
    ids only, so a prefix that names no job is refused here in words, not by a schema error."""
    job_id = resolve_job_id(client, given)
    if not _JOB_ID.match(job_id):
        raise CliError(f"no job {given.strip()!r} that you can see: give its id or a unique prefix of it")
    return job_id


def _request_ids_starting_with(client: ApiClient, given: str) -> list[str]:
    """The ids of the egress requests the caller sees that start with ``given``, filtered by
    the server (``id_prefix``), so a prefix resolves however many requests there are. A
    prefix that is not lower-case hex names no id: the server answers the id as given."""
    prefix = given.strip().rstrip("…")
    if not _HEX.match(prefix):
        return []
    rows = client.get("/api/v1/egress/requests", params={"id_prefix": prefix, "limit": _PAGE})
    return [str(r["id"]) for r in rows]


def resolve_request_id(client: ApiClient, given: str) -> str:
    """An egress request id from any unique prefix of it (see `pick_unique`)."""
    given = _given(given, "egress request")
    if not _needs_listing(given, HEX_ID_LEN):
        return given.strip().rstrip("…")
    return pick_unique(given, _request_ids_starting_with(client, given), "egress request")


# The hub lists a caller's newest 1,000 federated jobs at most: a prefix of an older one is
# sent as given, and the hub answers that it is not a whole id.
resolve_hub_job_id = _resolver(
    lambda c: [str(j["id"]) for j in c.get("/hub/v1/jobs", params={"limit": _PAGE})], "federated job"
)
resolve_grant_id = _resolver(lambda c: [str(g["id"]) for g in c.get("/api/v1/grants")], "grant")

_DIGEST_PREFIX = re.compile(r"^(?:(?P<name>[^@\s]+)@)?(?:sha256:)?(?P<hex>[0-9a-f]{4,63})…?$")


def resolve_image_ref(client: ApiClient, given: str) -> str:
    """An image reference (``name@sha256:HEX``) from a unique prefix of its digest.

    Takes ``name@sha256:PREFIX``, ``sha256:PREFIX`` or a bare hex ``PREFIX`` of an image the
    caller can see; a whole reference, or anything else, goes to the server as given.
    """
    given = given.strip()
    m = _DIGEST_PREFIX.match(given)
    if m is None:
        return given
    name, hexpart = m.group("name"), m.group("hex")
    images = client.get("/api/v1/images")
    refs = {
        str(i["reference"])
        for i in images
        if str(i["digest"]).removeprefix("sha256:").startswith(hexpart)
        and (name is None or str(i["reference"]).split("@", 1)[0] == name)
    }
    if len(refs) > 1:
        shown = ", ".join(sorted(refs)[:MAX_CANDIDATES_SHOWN])
        raise CliError(f"{given!r} matches {len(refs)} images ({shown}): give more characters of the digest")
    return refs.pop() if refs else given
