"""The user table compared with what the signed audit log says was done to each account.

Every change to an account goes through `tre.registry`, which records it in the same
transaction: ``admin.user_created`` (with the roles), ``admin.user_roles_changed`` (the
roles after), ``admin.user_disabled`` and ``admin.user_enabled``. The ``users`` and
``user_roles`` rows themselves can be edited by anyone who can write the database, with no
key, and the log still verifies (tamper round 19): a user enabled again by a row edit, a
role added, an account inserted, or the token epoch (``users.tokens_valid_from``) set back
to before a re-enable, which makes every token issued before the disable count again.
Authentication reads the rows (it cannot replay the log at every request), so `tre admin
doctor` replays the signed entries and names each account whose row says otherwise.

The epoch is compared with the time of the last signed creation or enable, less
`EPOCH_SLACK_S`: the row's time is taken a moment before the entry's, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.audit.attest import all_signed
from tre.audit.signing import AuditSigner
from tre.store.models import User

ACTIONS = ("admin.user_created", "admin.user_roles_changed", "admin.user_disabled", "admin.user_enabled")
EPOCH_SLACK_S = 2.0


@dataclass
class LoggedAccount:
    """One account as the signed entries leave it."""

    roles: list[str] = field(default_factory=list)
    disabled: bool = False
    epoch_from: datetime | None = None  # the last creation or enable


def _roles(value: object) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        return None
    return sorted(set(value))


def logged_accounts(session: Session, signer: AuditSigner | None = None) -> dict[str, LoggedAccount]:
    """Each user id the signed log names, replayed from its account entries (oldest first)."""
    accounts: dict[str, LoggedAccount] = {}
    for entry in all_signed(session, ACTIONS, signer):
        details, action = entry.fields.get("details"), entry.fields.get("action")
        user = details.get("user") if isinstance(details, dict) else None
        if not isinstance(user, str) or not isinstance(details, dict):
            continue
        try:
            at = datetime.fromisoformat(str(entry.fields.get("ts")))
        except ValueError:
            at = None
        if action == "admin.user_created":
            accounts[user] = LoggedAccount(_roles(details.get("roles")) or [], False, at)
            continue
        account = accounts.setdefault(user, LoggedAccount())
        if action == "admin.user_roles_changed":
            account.roles = _roles(details.get("after")) or []
        elif action == "admin.user_disabled":
            account.disabled = True
        else:
            account.disabled, account.epoch_from = False, at
    return accounts


def differences(session: Session, signer: AuditSigner | None = None) -> list[str]:
    """One sentence per account whose row differs from the signed log (empty: none)."""
    logged = logged_accounts(session, signer)
    found = []
    for user in session.scalars(select(User).order_by(User.id)):
        account = logged.get(user.id)
        if account is None:
            found.append(f"user {user.id}: no signed admin.user_created entry (made behind the log)")
            continue
        roles = sorted(user.role_names)
        if roles != account.roles:
            found.append(f"user {user.id}: roles {roles}, the log gave {account.roles}")
        if bool(user.disabled) != account.disabled:
            found.append(
                f"user {user.id}: {'disabled' if user.disabled else 'enabled'}, the log "
                f"{'disabled' if account.disabled else 'enabled'} it last"
            )
        epoch = user.tokens_valid_from or user.created_at
        if account.epoch_from is not None and (
            epoch is None or epoch.timestamp() < account.epoch_from.timestamp() - EPOCH_SLACK_S
        ):
            found.append(
                f"user {user.id}: token epoch {epoch.isoformat() if epoch else 'none'} is before the "
                f"signed creation or enable at {account.epoch_from.isoformat()}: tokens issued "
                "before it count again"
            )
    return found
