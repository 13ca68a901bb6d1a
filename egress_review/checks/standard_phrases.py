"""Fixed phrases that Python and common tools print, whose words a name part alone may not
withhold (round 18).

A person's name is searched for part by part as whole words, so a patient named "Last" had
every ``Traceback (most recent call last):`` of a job's log withheld, and "Call", "Cause" or
"Branch" would do the same to other lines tools print word for word. Inside one of these
phrases, written as the tool writes it (any case), a single word of a name is not a hit; the
full name, an ID, a UID or a date there still is, and the same word anywhere else still is.
The list is fixed (a job cannot add to it) and holds only text the tools print verbatim, so
what it lets through is the phrase itself, which says nothing about the dataset.
"""

from __future__ import annotations

import re

STANDARD_PHRASES = (
    # Python
    "Traceback (most recent call last):",
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
    # pip
    "Requirement already satisfied:",
    "Installing collected packages:",
    "Building wheels for collected packages:",
    "Successfully installed",
    "Successfully built",
    "Using cached",
    # git
    "Your branch is up to date with",
    "nothing to commit, working tree clean",
    "Already up to date.",
)
_PHRASES = re.compile("|".join(re.escape(p.lower()) for p in STANDARD_PHRASES))
WORDS = frozenset(re.findall(r"[a-z]+", " ".join(STANDARD_PHRASES).lower()))


def phrase_spans(lower: str) -> list[tuple[int, int]]:
    """Where the standard phrases stand in ``lower`` (text already lower-cased), in order."""
    return [m.span() for m in _PHRASES.finditer(lower)]


def inside(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether ``start``-``end`` lies within one of ``spans``."""
    return any(lo <= start and end <= hi for lo, hi in spans)
