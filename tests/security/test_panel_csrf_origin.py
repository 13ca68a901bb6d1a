"""A vote posted with an opaque origin (``Origin: null``: a sandboxed frame, a data:
document, a post redirected across origins) is refused even with a matching CSRF pair: the
double-submit cookie can be planted by a same-site page (cookie tossing), so the origin check
must not wave ``null`` through. The panel's own forms send its origin."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.security.test_route_sweep import ids as ids  # noqa: F401 - the fixture
from tests.security.test_token_revocation import _panel_sign_in


def test_a_post_from_an_opaque_origin_is_refused_and_our_own_origin_passes(
    app, world, ids, token_for
) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app) as reviewer:
        _panel_sign_in(reviewer, token_for("dana", "dac"))
        page = reviewer.get(f"/panel/requests/{ids['request_id']}")
        assert page.headers["referrer-policy"] == "same-origin"
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        form = {"vote": "approve", "comment": "", "csrf": csrf.group(1)}
        url = f"/panel/requests/{ids['request_id']}/vote"
        for origin in ("null", "http://127.0.0.1:1", "https://testserver"):
            resp = reviewer.post(url, data=form, headers={"Origin": origin}, follow_redirects=False)
            assert resp.status_code == 403, (origin, resp.text)
            assert resp.json()["type"] == "urn:tre:problem:csrf-origin"
            assert origin not in resp.text  # the caller's header is not echoed
        ours = reviewer.post(url, data=form, headers={"Origin": "http://testserver"}, follow_redirects=False)
        assert ours.status_code in (303, 409), ours.text  # past the CSRF check: the workflow decides
