"""The last enabled admin can be neither disabled nor demoted, and a disabled user can be
re-enabled (audited), over the API and with the local CLI alike.

The fuzzer disabled the only admin over the API within ten seconds, and nothing could
re-enable a user: the deployment was locked out of its own administration.
"""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select

from tre.store.db import session_scope
from tre.store.models import AuditEntry, User

USERS = "/api/v1/admin/users"


def _tre(settings, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "TRE_HOME": str(settings.home), "COLUMNS": "200"}
    env.pop("TRE_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _actions(engine, user: str) -> list[str]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return [
            e.action
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.idx))
            if f'"user":"{user}"' in e.body.replace(" ", "")
        ]


def _problem(resp, status: int) -> str:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    return str(resp.json()["detail"])


def test_the_only_admin_cannot_remove_themself_over_the_api(app_client, world, engine, token_for) -> None:  # type: ignore[no-untyped-def]
    root = world.headers["root"]
    assert "last enabled admin" in _problem(app_client.post(f"{USERS}/root/disable", headers=root), 409)
    for roles in ([], ["researcher"], ["auditor", "dac"]):
        detail = _problem(app_client.put(f"{USERS}/root/roles", headers=root, json={"roles": roles}), 409)
        assert "last enabled admin" in detail
    with session_scope(engine) as s:
        user = s.get(User, "root")
        assert user is not None and not user.disabled and user.role_names == {"admin"}
    # With a second enabled admin the first may step down; the second is then the last.
    assert (
        app_client.put(
            f"{USERS}/audrey/roles", headers=root, json={"roles": ["auditor", "admin"]}
        ).status_code
        == 200
    )
    assert (
        app_client.put(f"{USERS}/root/roles", headers=root, json={"roles": ["researcher"]}).status_code == 200
    )
    audrey = {"Authorization": f"Bearer {token_for('audrey', 'admin')}"}
    _problem(app_client.post(f"{USERS}/audrey/disable", headers=audrey), 409)
    _problem(app_client.put(f"{USERS}/audrey/roles", headers=audrey, json={"roles": ["auditor"]}), 409)


def test_a_disabled_admin_does_not_count(app_client, world, engine, token_for) -> None:  # type: ignore[no-untyped-def]
    root = world.headers["root"]
    assert app_client.post(USERS, headers=root, json={"id": "ada", "roles": ["admin"]}).status_code == 201
    assert app_client.post(f"{USERS}/ada/disable", headers=root).status_code == 200
    # ada is an admin but disabled: root is still the last *enabled* one.
    _problem(app_client.post(f"{USERS}/root/disable", headers=root), 409)
    # Re-enable over the API (audited), after which root may be disabled by ada.
    resp = app_client.post(f"{USERS}/ada/enable", headers=root)
    assert resp.status_code == 200 and resp.json()["disabled"] is False
    assert _actions(engine, "ada")[-2:] == ["admin.user_disabled", "admin.user_enabled"]
    ada = {"Authorization": f"Bearer {token_for('ada', 'admin')}"}
    assert app_client.post(f"{USERS}/root/disable", headers=ada).status_code == 200
    _problem(app_client.post(f"{USERS}/ada/disable", headers=ada), 409)
    # Only admins enable users.
    _problem(app_client.post(f"{USERS}/root/enable", headers=world.headers["alice"]), 403)


def test_cli_refuses_the_last_admin_and_enables_users(settings, engine, world) -> None:  # type: ignore[no-untyped-def]
    for args in (("--disable",), ("--role", "researcher")):
        proc = _tre(settings, "admin", "user", "root", *args)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "last enabled admin" in lines[0] and "Traceback" not in proc.stderr
    proc = _tre(settings, "admin", "user", "alice", "--disable")
    assert proc.returncode == 0, proc.stderr
    proc = _tre(settings, "admin", "user", "alice", "--enable")
    assert proc.returncode == 0 and "enabled" in proc.stdout, proc.stderr
    with session_scope(engine) as s:
        alice = s.get(User, "alice")
        assert alice is not None and not alice.disabled
    assert _actions(engine, "alice")[-2:] == ["admin.user_disabled", "admin.user_enabled"]
    # The re-enabled user signs in again.
    assert _tre(settings, "admin", "user", "alice", "--enable").returncode == 1  # already enabled
