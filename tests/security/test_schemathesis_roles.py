"""Property-based fuzzing of the whole API with schemathesis, once per role (issue 17, item 13).

Every operation of the OpenAPI document gets a few generated requests (valid and invalid
by the schema), and the same requests are sent with a researcher's, a DAC member's, an
auditor's and an admin's token in turn, into one world (generating them is most of the
cost: once, not once per role). The
check is schemathesis' ``not_a_server_error`` (no 5xx), plus: every error answer is an RFC
9457 problem document that names no server path, stack frame, SQL or secret
(`tests.fuzzing.error_leaks_nothing`). Bounded: a few examples per operation, no shrinking, no example
database, a fixed seed, so the whole run repeats itself.
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

from tests.fuzzing import (  # noqa: E402
    error_is_a_problem_document,
    error_leaks_nothing,
    generate_cases,
    judge_cases,
)
from tests.worlds import job_body  # noqa: E402
from tre.jobs.paths import log_path  # noqa: E402

EXAMPLES_PER_OPERATION = 10


# Roles in an order where the admin's fuzzing (which may disable users) comes last.
ROLES = (("alice", "researcher"), ("dana", "dac"), ("audrey", "auditor"), ("root", "admin"))


def no_server_error(operation: Any, case: Any, response: Any) -> str | None:
    """schemathesis' ``not_a_server_error``, and every error a problem document."""
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except Exception as exc:  # noqa: BLE001 - collect every failure, then report all
        return f"{operation.label}: {type(exc).__name__}: {str(exc)[:300]}"
    return error_is_a_problem_document(operation, response, also=("text/html",))


def test_no_server_error_for_any_role(  # type: ignore[no-untyped-def]
    app, app_client, world, settings, token_for, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative dataset paths the fuzzer invents resolve here
    job = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    log_path(settings, job).parent.mkdir(parents=True, exist_ok=True)
    log_path(settings, job).write_text("step 1\nstep 2\n")
    known = {"job_id": job, "project_id": "p1", "user_id": "alice", "grant_id": world.grant_id}
    cases = generate_cases(
        app,
        examples=EXAMPLES_PER_OPERATION,
        known_ids=known,
        negative_with_ids=True,
        reproducible=20261130,  # the same requests on every run of the same schema
    )
    problems: list[str] = []
    for user, role in ROLES:
        token = token_for(user, role)
        secrets = (str(settings.home), str(settings.keys_dir), str(tmp_path), token)

        def judge(operation: Any, case: Any, response: Any, secrets: tuple[str, ...] = secrets) -> str | None:
            return no_server_error(operation, case, response) or error_leaks_nothing(
                operation, response, secrets
            )

        found = judge_cases(cases, {"Authorization": f"Bearer {token}"}, judge)
        problems += [f"as {role}: {problem}" for problem in found]
    assert not problems, "\n".join(sorted(set(problems))[:40])
