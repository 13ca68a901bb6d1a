"""A token as a person pastes it, reduced to the token.

People copy tokens from wherever they saw one: a curl line (``Bearer eyJ...``, or the whole
``Authorization: Bearer ...`` header), a JSON or shell string (``"eyJ..."``). Every such paste
was refused as "malformed token: Invalid header padding" (PyJWT's words), and the CLI then told
the person to get a new token, though theirs was fine. Only the wrapping is taken off: the
token itself is verified exactly as before.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^(?:authorization:\s*)?bearer\s+", re.IGNORECASE)
_QUOTES = ("'", '"')


def pasted_token(text: str) -> str:
    """``text`` without surrounding blanks, matching quotes and a leading bearer scheme."""
    token = text.strip()
    for _ in range(2):  # "Bearer eyJ..." in quotes, or Bearer "eyJ..."
        token = _SCHEME.sub("", token).strip()
        if len(token) >= 2 and token[0] == token[-1] and token[0] in _QUOTES:
            token = token[1:-1].strip()
    return token
