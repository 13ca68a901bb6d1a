"""Round 13: every change to who can review warns at the moment it leaves a quorum unmeetable.

Taking ``dac`` from a reviewer, disabling them, taking them off a committee or making them a
member of a project (a conflict of interest) is refused with ``409 quorum-unmeetable`` when a
dataset's committee or an open request could then never be decided, unless forced (audited
with what was lost). Real stores (SQLite and PostgreSQL), the real app, the real CLI.

The world (test_committees.build_two): ``lidc-subset`` reviewed by dana and dave (quorum
two); ``ct2`` reviewed by erin, fay and dora.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.egress.test_airlock_seams import audited
from tests.egress.test_committees import OUTPUTS, ask, build_two
from tests.egress.test_workflow_support import with_egress_routes
from tests.worlds import WorldFactory
from tre import committees, registry
from tre.cli.admin import admin_app
from tre.errors import TreError
from tre.store.db import session_factory
from tre.store.models import User


@pytest.fixture
def factory(engine_any):  # type: ignore[no-untyped-def]
    return session_factory(engine_any)


@pytest.fixture
def two(factory, esettings):  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        return build_two(s, esettings)


def roles_of(factory, user_id: str) -> tuple[set[str], bool]:  # type: ignore[no-untyped-def]
    with factory() as s:
        user = s.get(User, user_id)
        return set(user.role_names), user.disabled


def test_taking_dac_from_a_reviewer_a_quorum_needs_is_refused_unless_forced(factory, esettings, two) -> None:
    policies = esettings.resolved_policies_dir
    with pytest.raises(TreError) as err, factory.begin() as s:
        registry.set_user_roles(s, two.world.admin, "dana", ["researcher"], policies_dir=policies)
    assert (err.value.status, err.value.slug) == (409, "quorum-unmeetable")
    assert two.world.dataset_id in err.value.detail and "--force" in err.value.detail
    # the roles in words, not a Python list ("to ['researcher']": newcomer round 23)
    assert "changing the roles of 'dana' to researcher would" in err.value.detail, err.value.detail
    assert roles_of(factory, "dana") == ({"dac"}, False)  # nothing changed
    assert audited(factory, "admin.user_roles_changed") == []
    with factory.begin() as s:
        registry.set_user_roles(s, two.world.admin, "dana", ["researcher"], policies_dir=policies, force=True)
    assert roles_of(factory, "dana") == ({"researcher"}, False)
    [event] = audited(factory, "admin.user_roles_changed")
    assert event["forced"] is True and event["quorum_meetable"] is False
    assert event["quorum_lost_datasets"] == [two.world.dataset_id]
    with factory() as s:
        report = {c.dataset_id: c.meetable for c in committees.committee_report(s, policies)}
    assert report[two.world.dataset_id] is False


def test_disabling_a_reviewer_a_quorum_needs_is_refused_unless_forced(factory, esettings, two) -> None:
    policies = esettings.resolved_policies_dir
    with pytest.raises(TreError) as err, factory.begin() as s:
        registry.set_user_disabled(s, two.world.admin, "dave", True, policies_dir=policies)
    assert err.value.slug == "quorum-unmeetable" and "disabling 'dave'" in err.value.detail
    assert roles_of(factory, "dave") == ({"dac"}, False)
    with factory.begin() as s:
        registry.set_user_disabled(s, two.world.admin, "dave", True, policies_dir=policies, force=True)
    assert roles_of(factory, "dave") == ({"dac"}, True)
    [event] = audited(factory, "admin.user_disabled")
    assert event["user"] == "dave" and event["quorum_lost_datasets"] == [two.world.dataset_id]
    # Only what a change newly breaks is refused: with lidc-subset already short, disabling
    # dana too is not held up (an admin must be able to lock a compromised account).
    with factory.begin() as s:
        registry.set_user_disabled(s, two.world.admin, "dana", True, policies_dir=policies)
    # Enabling gives capacity back: never refused.
    with factory.begin() as s:
        registry.set_user_disabled(s, two.world.admin, "dave", False, policies_dir=policies)


def test_a_change_that_leaves_every_quorum_meetable_goes_through_unremarked(factory, esettings, two) -> None:
    """ct2 has three able reviewers and needs two: erin may go; a researcher's roles are not
    a reviewer's change at all."""
    policies = esettings.resolved_policies_dir
    with factory.begin() as s:
        registry.set_user_disabled(s, two.world.admin, "erin", True, policies_dir=policies)
        registry.set_user_roles(
            s, two.world.admin, two.world.researcher, ["researcher"], policies_dir=policies
        )
    assert audited(factory, "admin.user_disabled") == [{"user": "erin"}]
    # Now fay is needed: ct2 is down to fay and dora.
    with pytest.raises(TreError) as err, factory.begin() as s:
        registry.set_user_roles(s, two.world.admin, "fay", ["auditor"], policies_dir=policies)
    assert "ct2" in err.value.detail


def test_an_open_request_that_would_lose_its_quorum_is_named(factory, esettings) -> None:
    """ct2 asks three reviews (strict3) of erin, fay, dora and gus; dora is a member of the
    request's project, so three may vote. Taking gus off the committee leaves it three able
    members on paper (meetable) but the open request only two: refused, naming the request.
    Joining the project does the same (a conflict of interest), as does disabling gus."""
    policies = esettings.resolved_policies_dir
    with factory.begin() as s:
        two = build_two(s, esettings, ct2_policy="strict3")
        make = WorldFactory(s, actor=two.world.admin)
        make.users({"gus": ["dac"]})
        committees.assign(s, two.world.admin, "ct2", "gus", policies)
        registry.add_member(s, two.world.admin, two.world.project_id, "dora")
    rid = ask(factory, esettings, two.world, two.job_b)
    with pytest.raises(TreError) as err, factory.begin() as s:
        committees.unassign(s, two.world.admin, "ct2", "gus", policies)
    assert err.value.slug == "quorum-unmeetable" and rid in err.value.detail
    with pytest.raises(TreError) as err, factory.begin() as s:
        registry.add_member(s, two.world.admin, two.world.project_id, "gus")
    assert err.value.slug == "quorum-unmeetable" and rid in err.value.detail
    with pytest.raises(TreError) as err, factory.begin() as s:
        registry.set_user_disabled(s, two.world.admin, "gus", True, policies_dir=policies)
    assert rid in err.value.detail
    with factory() as s:
        assert committees.committee(s, "ct2") == ["dora", "erin", "fay", "gus"]
    with factory.begin() as s:
        committees.unassign(s, two.world.admin, "ct2", "gus", policies, force=True)
    [event] = [d for d in audited(factory, "admin.dac_unassigned") if d["user"] == "gus"]
    assert event["forced"] is True and event["quorum_lost_requests"] == [rid]
    assert event["quorum_meetable"] is False


def test_the_api_and_the_cli_refuse_and_force(app, db, esettings, token_for, monkeypatch) -> None:
    with db.begin() as s:
        two = build_two(s, esettings)
    admin = {"Authorization": f"Bearer {token_for(two.world.admin, 'admin')}"}
    with TestClient(with_egress_routes(app)) as c:
        for method, path, body in (
            ("PUT", "/api/v1/admin/users/dana/roles", {"roles": ["researcher"]}),
            ("POST", "/api/v1/admin/users/dana/disable", None),
        ):
            got = c.request(method, path, headers=admin, json=body)
            assert got.status_code == 409, got.text
            assert got.headers["content-type"].startswith("application/problem+json")
            problem = got.json()
            assert problem["type"].endswith("quorum-unmeetable") and two.world.dataset_id in problem["detail"]
        assert roles_of(db, "dana") == ({"dac"}, False)
        forced = c.post("/api/v1/admin/users/dana/disable?force=true", headers=admin)
        assert forced.status_code == 200 and forced.json()["disabled"] is True
        listed = {d["dataset_id"]: d for d in c.get("/api/v1/admin/committees", headers=admin).json()}
        assert listed[two.world.dataset_id]["quorum_meetable"] is False
        c.post("/api/v1/admin/users/dana/enable", headers=admin).raise_for_status()
        # A DAC member joining the project conflicts only with its open requests.
        rid = c.post(
            "/api/v1/egress/requests",
            headers={"Authorization": f"Bearer {token_for(two.world.researcher, 'researcher')}"},
            json={"job_id": two.job_a, "files": list(OUTPUTS), "justification": "counts"},
        ).json()["id"]
        joined = c.post(
            f"/api/v1/projects/{two.world.project_id}/members", headers=admin, json={"user_id": "dana"}
        )
        assert joined.status_code == 409 and rid in joined.json()["detail"]

    # The local CLI (`tre admin user`): refused in one line, done with --force.
    monkeypatch.setenv("TRE_POLICIES_DIR", str(esettings.resolved_policies_dir))
    env = {**os.environ, "TRE_POLICIES_DIR": str(esettings.resolved_policies_dir)}
    cli = [sys.executable, "-m", "tre.cli.main", "admin", "user", "dave", "--disable"]
    refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stderr
    assert "quorum" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert roles_of(db, "dave") == ({"dac"}, False)
    done = CliRunner().invoke(admin_app, ["user", "dave", "--disable", "--force"])
    assert done.exit_code == 0, done.output
    assert roles_of(db, "dave") == ({"dac"}, True)
