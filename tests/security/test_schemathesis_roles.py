"""Property-based fuzzing of the whole API with schemathesis, once per role (issue 17, item 13).

Every operation of the OpenAPI document gets a few generated requests (valid and invalid
by the schema) with a researcher's, a DAC member's, an auditor's and an admin's token. The
check is schemathesis' ``not_a_server_error`` (no 5xx), plus: every error answer is an RFC
9457 problem document. Bounded: a few examples per operation, no shrinking, no example
database, so the whole run takes about a minute.
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

import tests.fuzzing  # noqa: E402, F401 - registers the upload-body serializer
from tests.worlds import job_body  # noqa: E402
from tre.jobs.paths import log_path  # noqa: E402

EXAMPLES_PER_OPERATION = 10


# Roles in an order where the admin's fuzzing (which may disable users) comes last.
ROLES = (("alice", "researcher"), ("dana", "dac"), ("audrey", "auditor"), ("root", "admin"))


def _fuzz(app: Any, headers: dict[str, str], known: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        # Valid and invalid data by the schema, and the same with ids that exist (so checks
        # behind the lookups are reached, e.g. a log offset on a real job).
        ids = {k: v for k, v in known.items() if "{" + k + "}" in operation.path}
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )
        if ids:
            strategy = strategy | operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=ids)
            strategy = strategy | operation.as_strategy(GenerationMode.POSITIVE, path_parameters=ids)

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as exc:  # noqa: BLE001 - collect every failure, then report all
                problems.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:300]}")
                return
            if response.status_code >= 400:
                kind = " ".join(response.headers.get("content-type") or [])
                if not kind.startswith("application/problem+json") and "text/html" not in kind:
                    problems.append(f"{operation.label}: {response.status_code} answered as {kind!r}")

        run()
    return problems


@pytest.mark.parametrize(("user", "role"), ROLES)
def test_no_server_error_for_any_role(  # type: ignore[no-untyped-def]
    app, app_client, world, settings, token_for, user: str, role: str, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative dataset paths the fuzzer invents resolve here
    job = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    log_path(settings, job).parent.mkdir(parents=True, exist_ok=True)
    log_path(settings, job).write_text("step 1\nstep 2\n")
    known = {"job_id": job, "project_id": "p1", "user_id": "alice", "grant_id": world.grant_id}
    headers = {"Authorization": f"Bearer {token_for(user, role)}"}
    problems = _fuzz(app, headers, known)
    assert not problems, "\n".join(sorted(set(problems))[:40])
