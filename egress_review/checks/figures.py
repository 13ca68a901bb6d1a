"""Counts written as a figure's labels: SVG text and OCRed chart text (leaks12).

A bar chart with ``ax.bar_label`` prints each bar's count; in an SVG the label is text (a
``<text>`` element, or with matplotlib's default of glyphs drawn as paths, the ``<!-- 3 -->``
comment it writes before each glyph group), in a PNG it is pixels that OCR reads. The axis
ticks are numbers too, but ticks come as a run of three or more evenly spaced values in
drawing order (``0 10 20 30``); labels do not. So a whole number that is not part of such a
run, or one written ``B: 3``, is read as a drawn count, and one under the threshold is
flagged (`sdc.prose_counts`: a label may be a size in mm as well as a count, the reviewers
look at the figure).

A bar's *height* is not read: turning it into a number needs the axis's scale and the
plotting library's layout. That is a residual the reviewers cover by looking (docs).

SVG text is collected with regular expressions, not an XML parser: matplotlib's SVGs declare
a DOCTYPE, which the hardened XML reader refuses, and the text must be read either way.
"""

from __future__ import annotations

import html
import re

from egress_review.checks.model import CheckResult, action_outcome
from tre.plural import agree, count
from tre.policy import Policy

MAX_SVG_CHARS = 16 * 1024 * 1024
MAX_LABELS = 20_000
_TEXT = re.compile(r"<(text|title|desc)\b[^>]*>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_LABEL = re.compile(
    r"^(?:(?P<name>[^\d\s:=][^:=]{0,40}?)\s*[:=]\s*)?(?P<num>\d{1,7})(?:\s*\(\s*\d+(?:\.\d+)?\s*%\s*\))?$"
)


def svg_texts(text: str) -> list[str]:
    """The text items of an SVG in drawing order: ``<text>`` (its ``<tspan>`` parts joined),
    ``<title>``, ``<desc>`` and comments (matplotlib's glyph groups)."""
    text = text[:MAX_SVG_CHARS]
    found: list[tuple[int, str]] = []
    for m in _TEXT.finditer(text):
        found.append((m.start(), html.unescape(_TAG.sub("", m.group(2)))))
    for m in _COMMENT.finditer(text):
        found.append((m.start(), html.unescape(m.group(1))))
    found.sort()
    return [" ".join(t.split()) for _, t in found[:MAX_LABELS] if t.strip()]


def _runs(values: list[int | None]) -> set[int]:
    """Indexes of values in a run of 3+ consecutive numbers with one step (axis ticks)."""
    ticks: set[int] = set()
    i = 0
    while i < len(values) - 2:
        a, b, c = values[i], values[i + 1], values[i + 2]
        if a is None or b is None or c is None or b - a != c - b or b == a:
            i += 1
            continue
        j = i + 2
        while j + 1 < len(values) and values[j + 1] is not None and values[j + 1] - values[j] == b - a:  # type: ignore[operator]
            j += 1
        ticks.update(range(i, j + 1))
        i = j + 1
    return ticks


def drawn_counts(labels: list[str], threshold: int) -> list[str]:
    """The labels that read as a count under ``threshold`` (not an axis tick)."""
    parsed = [_LABEL.match(label) for label in labels]
    bare: list[int | None] = [int(m.group("num")) if m and not m.group("name") else None for m in parsed]
    ticks = _runs(bare)
    out: list[str] = []
    for i, m in enumerate(parsed):
        if m is None or i in ticks:
            continue
        if 0 < int(m.group("num")) < threshold:
            out.append(labels[i])
    return out


def check_drawn_counts(labels: list[str], policy: Policy, what: str) -> list[CheckResult]:
    """A flag when a figure's labels hold counts under the threshold; ``what`` is a fixed word
    ('SVG figure', 'image (OCR)')."""
    return small_counts_flag(drawn_counts(labels, policy.sdc.threshold), policy, what)


def small_counts_flag(small: list[str], policy: Policy, what: str) -> list[CheckResult]:
    """The ``sdc:figure`` flag for labels already judged counts under the threshold (by text
    here, by position too in `figure_pixels`); the labels reach the reviewer only."""
    if not small:
        return []
    return [
        CheckResult(
            check="sdc:figure",
            outcome=action_outcome(policy.sdc.prose_counts),
            reason=f"{count(len(small), 'label')} drawn in the {what} "
            f"{agree(len(small), 'reads as a count', 'read as counts')} below the threshold of "
            f"{policy.sdc.threshold} (a bar or point label that is not an axis tick)",
            evidence={"threshold": policy.sdc.threshold, "reviewer_only": {"labels": small[:50]}},
        )
    ]


def is_svg(name: str, text: str) -> bool:
    head = text.lstrip("\ufeff \t\r\n")[:2048].lower()
    return name.lower().endswith((".svg", ".svgz")) or "<svg" in head
