"""Authentication: JWT bearer tokens (embedded EdDSA issuer, or an external OIDC issuer)."""

from tre.auth.principal import Principal

__all__ = ["Principal"]
