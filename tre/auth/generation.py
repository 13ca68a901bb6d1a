"""Which of a user's tokens still count: those issued since the user row's token epoch.

A bearer token names its user by id, and an id is a name an admin can give again: a user
deleted and made again under the same name (or a row restored from a backup) accepted every
unexpired token of the old one, and a disabled user enabled again accepted the tokens issued
before the disable, copies of which may be anywhere (a shell history, a proxy log). Each user
row carries ``tokens_valid_from`` (`tre.store.models.User`): set when the row is made and again
when the user is enabled. A token whose ``iat`` is earlier is refused, for the embedded issuer
and an OpenID provider's tokens alike (both carry ``iat``; the verifier requires it), with no
claim of our own: an OIDC access token cannot carry one.

The comparison is in whole seconds (``iat`` is): a token issued in the same second as the
re-creation or the enable, before it, still counts. Known and documented (docs/audit.md).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from tre.store.base import utcnow
from tre.store.models import User


def epoch_of(valid_from: datetime | None, created_at: datetime | None) -> float:
    """The user's token epoch in Unix seconds (0: no bound, a row with neither time)."""
    moment = valid_from or created_at
    return moment.timestamp() if moment is not None else 0.0


def issued_before(claims: dict[str, Any], epoch: float) -> bool:
    """Whether the verified token was issued before the user's epoch (so it is refused)."""
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        return True  # the verifier requires iat; deny by default all the same
    return iat < math.floor(epoch)


def start_new_epoch(user: User) -> None:
    """From now on only tokens issued from now count (a user enabled again)."""
    user.tokens_valid_from = utcnow()
