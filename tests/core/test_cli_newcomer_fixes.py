"""What users following the docs met: an empty id, a hub job prefix, a token lifetime setting.

``tre logs ""`` (an unset shell variable: ``tre logs $JOB``) used to send the request to the
jobs collection's route and answer "no such API route"; every id argument now says that no
id was given, before any request. ``TRE_TOKEN_TTL_S`` was listed as a setting but
``tre admin token`` ignored it; it is now the lifetime when ``--ttl`` is not given.
"""

from __future__ import annotations

import json
from base64 import urlsafe_b64decode
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from tre.cli.admin import admin_app
from tre.cli.client import ApiClient, CliError
from tre.cli.resolve import resolve_grant_id, resolve_hub_job_id, resolve_job_id, resolve_request_id
from tre.config import reset_settings_cache


class NoRequests(ApiClient):
    """An API client that fails the test if a request is made at all."""

    def __init__(self) -> None:
        pass

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an empty id must be refused before any request")


@pytest.mark.parametrize(
    ("resolve", "what"),
    [
        (resolve_job_id, "job"),
        (resolve_request_id, "egress request"),
        (resolve_grant_id, "grant"),
        (resolve_hub_job_id, "federated job"),
    ],
)
@pytest.mark.parametrize("given", ["", "  ", "…"])
def test_an_empty_id_is_refused_in_words(resolve: Any, what: str, given: str) -> None:
    with pytest.raises(CliError, match=f"^no {what} id given: give its id or a unique prefix of it$"):
        resolve(NoRequests(), given)


def test_a_real_prefix_still_resolves() -> None:
    class OneJob(NoRequests):
        def get(self, *args: Any, **kwargs: Any) -> Any:
            return [{"id": "ab12" + "0" * 28}]

    assert resolve_job_id(OneJob(), "ab12") == "ab12" + "0" * 28


def test_a_federated_job_prefix_resolves_at_the_hub() -> None:
    """`tre hub job show JOB` / `tre hub results JOB` took whole ids only (the hub answered
    "give a whole id"), though the README promises prefixes for every id a command prints."""
    asked: list[tuple[Any, ...]] = []

    class Hub(NoRequests):
        def get(self, *args: Any, **kwargs: Any) -> Any:
            asked.append((*args, kwargs.get("params")))
            return [{"id": "7d640" + "0" * 27}, {"id": "7d641" + "1" * 27}]

    assert resolve_hub_job_id(Hub(), "7d640") == "7d640" + "0" * 27
    assert asked == [("/hub/v1/jobs", {"limit": 1000})]
    with pytest.raises(CliError, match="matches 2 federated jobs"):
        resolve_hub_job_id(Hub(), "7d64")


def _claims(output: str) -> dict[str, Any]:
    payload = output.strip().splitlines()[-1].split(".")[1]
    return dict(json.loads(urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_admin_token_lifetime_follows_the_setting(
    world: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRE_TOKEN_TTL_S", "900")
    reset_settings_cache()
    try:
        res = CliRunner().invoke(admin_app, ["token", "--user", "alice", "--role", "researcher"])
        assert res.exit_code == 0, res.output
        claims = _claims(res.output)
        assert claims["exp"] - claims["iat"] == 900
        res = CliRunner().invoke(
            admin_app, ["token", "--user", "alice", "--role", "researcher", "--ttl", "60"]
        )
        assert res.exit_code == 0, res.output
        claims = _claims(res.output)
        assert claims["exp"] - claims["iat"] == 60
    finally:
        reset_settings_cache()
