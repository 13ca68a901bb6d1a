"""Who is calling, after the token was verified and checked against the user table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str]
    token_id: str | None = None

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))
