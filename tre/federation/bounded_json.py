"""Free-form JSON a node sends the hub (a disclosure record, a search answer), bounded.

Pydantic checks the shape of typed fields; a ``dict[str, Any]`` it takes whole. Without a
bound a node could fill each stored row up to the 1 MiB request limit, nest it deep enough
to make every later reader (the hub's JSON column, `tre hub results`) recurse thousands of
levels, and that for every child. Each such field says its limit in its validation answer
(a 422 problem naming the field), and the node's agent checks before it sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import AfterValidator

# A disclosure record lists checks and notes per released file (at most 1000 files); real
# ones are a few KiB. 256 KiB leaves room and stays well under the request limit.
MAX_DISCLOSURE_RECORD_BYTES = 256 * 1024
MAX_SEARCH_ANSWER_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16


def _depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests, counting no further than ``limit + 1`` (iterative: a deep
    value must not exhaust the stack of the check meant to refuse it)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children)
    return deepest


def bounded(what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> AfterValidator:
    """A validator refusing a JSON value over ``max_bytes`` (compact UTF-8) or ``max_depth``."""

    def check(value: Any) -> Any:
        if _depth(value, max_depth) > max_depth:
            raise ValueError(f"the {what} nests deeper than {max_depth} levels")
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > max_bytes:
            raise ValueError(f"the {what} is {size} bytes of JSON; at most {max_bytes} are taken")
        return value

    validator: Callable[[Any], Any] = check
    return AfterValidator(validator)
