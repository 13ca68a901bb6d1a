"""The OpenAPI document tells the truth: schemathesis with ALL its checks, once per role.

Every operation gets generated requests (valid and invalid by the schema, and the same with
ids that exist), sent with a researcher's, a DAC member's, an auditor's and an admin's token
in turn into one world (generated once: generating is most of the cost), and every answer
must conform: documented status codes, content types, headers and bodies,
no 5xx, refusals of schema-invalid requests, and so on. Clients are generated from this
document, so a mismatch is a bug whichever side is wrong. Bounded (a few examples per
operation, no shrinking, no example database, the same requests on every run of the same
schema: `tests.fuzzing.generate_cases`).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from tests.fuzzing import generate_cases, judge_cases  # noqa: E402
from tests.worlds import job_body  # noqa: E402
from tre.jobs.paths import log_path  # noqa: E402

EXAMPLES_PER_OPERATION = 6
# Rules JSON Schema cannot state, and why: each is about the server's state or across fields,
# so a request the schema calls valid may be refused 4xx (ST202, "schema-valid request
# rejected"). Only these operation/check pairs may fail; anything else fails the test. Every
# rule the schema CAN state is in it (ids, patterns, enums, bounds, required bodies, non-empty
# file names), and none of these pairs is about a filter accepting what its schema refuses.
KNOWN_GAPS = {
    ("GET /api/v1/audit/proof/consistency", "ST202"),  # across fields: first <= second
    # across fields and state: leaf index < tree size <= the log's size (the roles' requests
    # share one world, so the log's size depends on what the roles before did)
    ("GET /api/v1/audit/proof/inclusion", "ST202"),
    ("POST /api/v1/datasets", "ST202"),  # state: the path must be an existing folder on the host
    ("POST /api/v1/egress/requests", "ST202"),  # state: the files must be outputs of that job
    ("POST /api/v1/images", "ST202"),  # content: the bytes must be a docker/OCI image archive
    ("POST /api/v1/images/push", "ST202"),  # state: the image must have been imported
    ("POST /api/v1/images/approvals", "ST202"),  # state: the image must have been imported
    ("POST /api/v1/images/approvals/revoke", "ST202"),  # state: the approval must exist
    ("POST /api/v1/jobs", "ST202"),  # state: admission (membership, grants, quota, image approval)
    ("POST /api/v1/egress/requests/{request_id}/resolution", "ST202"),  # state: request conflicted
    ("GET /ga4gh/tes/v1/tasks", "ST202"),  # state: page_token must be one the server gave out
    # GA4GH's published TesTask schema, served as is: tags are optional there, while tre
    # refuses a task without tags.Project (docs/tes.md); TES clients are generated from GA4GH's.
    ("POST /ga4gh/tes/v1/tasks", "ST202"),
}
ROLES = (("alice", "researcher"), ("dana", "dac"), ("audrey", "auditor"), ("root", "admin"))


def all_checks(operation: Any, case: Any, response: Any) -> str | None:
    """Every registered schemathesis check; only the known gaps may fail."""
    try:
        case.validate_response(response)  # every registered check
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect, then report all
        text = str(exc)
        codes = sorted(set(re.findall(r"\bST\d{3}\b", text))) or ["other"]
        if not all((operation.label, code) in KNOWN_GAPS for code in codes):
            first = " | ".join(text.strip().splitlines()[2:4])[:200]
            return f"{operation.label}: {first} -> {response.status_code} {response.text[:200]}"
    return None


def test_every_answer_conforms_to_the_schema(  # type: ignore[no-untyped-def]
    app, app_client, world, settings, token_for, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    job = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    log_path(settings, job).parent.mkdir(parents=True, exist_ok=True)
    log_path(settings, job).write_text("step 1\nstep 2\n")
    known = {"job_id": job, "project_id": "p1", "user_id": "alice", "grant_id": world.grant_id}
    cases = generate_cases(
        app,
        examples=EXAMPLES_PER_OPERATION,
        known_ids=known,
        reproducible=20261129,  # the same requests on every run of the same schema
    )
    failures: list[str] = []
    for user, role in ROLES:  # the admin last: its requests may disable the others
        headers = {"Authorization": f"Bearer {token_for(user, role)}"}
        failures += [f"as {role}: {failure}" for failure in judge_cases(cases, headers, all_checks)]
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(sorted(set(failures))[:60])
