"""A count with its noun in the right number: ``1 file``, ``2 files``, ``0 entries``.

Messages said ``1 file(s)`` and ``1 able reviewer(s)``: a reader has to parse the hedge, and
a count of one read like a template left unfinished (newcomer round 23). Every message that
counts something says it with `count` (and `agree` for a verb that follows the count);
tests/test_house_style.py refuses a ``(s)`` plural in the packages' strings.

A leaf module (standard library only), so the executors, the core and the airlock can all
use it.
"""

from __future__ import annotations


def plural(noun: str) -> str:
    """The regular English plural of ``noun``'s last word: ``entry`` -> ``entries``,
    ``match`` -> ``matches``, ``file`` -> ``files``. Irregular ones are passed to `count`."""
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def count(n: int, noun: str, plural_form: str | None = None) -> str:
    """``n`` and ``noun``, the noun plural unless ``n`` is exactly 1: ``count(1, "file")`` is
    ``1 file``, ``count(0, "file")`` is ``0 files``. ``plural_form`` for an irregular noun."""
    return f"{n} {noun if n == 1 else (plural_form or plural(noun))}"


def agree(n: int, singular: str, plural_verb: str) -> str:
    """The verb that follows a count of ``n``: ``agree(1, "is", "are")`` is ``is``."""
    return singular if n == 1 else plural_verb
