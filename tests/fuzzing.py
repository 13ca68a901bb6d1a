"""What every schemathesis pass of the suite shares (no tests here).

Importing it registers, once for the process, how schemathesis sends bodies to the upload
routes (code archives, images): the generated value as raw bytes. Those routes must refuse
garbage with a 4xx, never a 500.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/gzip", "application/x-tar", "application/octet-stream")
def raw_bytes(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return repr(value).encode()
