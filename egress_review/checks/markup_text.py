"""The text a markup file shows (airlock round 18): ``Z<tspan>QX-0003</tspan>`` reads "ZQX-0003".

An SVG, HTML or XML file is searched as written, so its tags sit between the letters a
viewer joins: ``<tspan>Z</tspan><tspan>QX-0003</tspan>`` in a figure's label, ``Z<b></b>QX``
in a page, ``Z<!-- -->QX`` with a comment. `shown_text` removes the tags that do not break
a word (inline elements, comments, processing instructions) and turns the others into a
blank, keeping line breaks, so the identifier search reads what the reader sees. A tag is at
most a few hundred characters; a longer "tag" is left as written.
"""

from __future__ import annotations

import re

# elements a renderer lays out inline: removed without a gap (the letters either side join)
_INLINE = frozenset(
    "tspan textpath a b i u s em strong span sub sup small big font code kbd mark q abbr tt del ins "
    "bdi bdo wbr".split()
)
# no '<' inside either: each try stops at the next one, so a text of "<!--" or "<a" repeated
# is read in one pass
_TAG = re.compile(r"<!--[^<>]{0,2000}?-->|<[?!/]?([A-Za-z][\w:.-]{0,40})[^<>]{0,500}>")


def has_markup(text: str) -> bool:
    """Whether ``text`` has something that may be a tag (cheap test before `shown_text`)."""
    return "<" in text and ">" in text


def shown_text(text: str) -> str:
    """``text`` with inline tags and comments removed and other tags blanked (line breaks kept)."""

    def replace(m: re.Match[str]) -> str:
        name = (m.group(1) or "").lower().rsplit(":", 1)[-1]
        if m.group(0).startswith("<!--") or name in _INLINE or m.group(0).startswith("<?"):
            return "\n" * m.group(0).count("\n")
        return " " + "\n" * m.group(0).count("\n")

    return _TAG.sub(replace, text)
