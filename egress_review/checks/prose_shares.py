"""Shares of people said in a report's sentences, with no count beside them (leaks16-leaks19).

"3.0 % of the cohort withdrew", "Overall, 3.0 % withdrew consent", "3.8 % of the patients at
site B died": each is a share of a whole (the cohort's, a site's) that a released or stated
total turns into a count (`released.small_shares`, the request-share check). Moved here from
`released` in leaks19, which added the spellings that name what happened without an outcome
word ("6.1 % had a dose reduction", "9.1 % developed grade 3 toxicity", "a dose reduction
occurred in 6.1 %") and a share as a named line ("Relapse rate: 6.1 %").

A clause that opens on things ("Of the lesions, 6.1 % progressed", "Across slices, 3.0 % had
artefacts") is no share of people: the bare spellings are skipped there; nor is what the data
had ("6.1 % had missing values", leaks20: a share of values, fields or records).

Since leaks20 a share in other spellings is read as its percentage first (`as_percentages`):
"one in eleven patients" (9.091 % of patients), "2 out of every 33", "one of every eleven",
"61 per mille", "61 ‰", "6.1 percent"; since leaks21 also "one patient in eleven", "one per
eleven patients", "every eleventh patient" and a proportion of people, "0.061 of the patients".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from egress_review.checks.number_words import VALUES
from egress_review.checks.shares import DATA_NOUNS, is_metric, thing_word
from egress_review.checks.text_counts import OUTCOME_WORDS, PEOPLE_WORDS, people_word

MAX_HEAD = 1024 * 1024  # the first MiB of a text is read for its shares
_P = r"(?<![\w.])(?P<p>\d{1,3}(?:\.(?P<d>\d{1,3}))?)[ \t]*%"

# "3.0 % of the cohort withdrew": a share of the whole cohort with no count beside it (leaks16)
_OF_COHORT = re.compile(
    _P + r"[ \t]+(?:of|among)[ \t]+"
    r"(?:the[ \t]+|all[ \t]+|our[ \t]+)?(?:whole[ \t]+|study[ \t]+|included[ \t]+|enrolled[ \t]+)?"
    r"(?:cohort|patients|participants|subjects|population|sample|people|cases)\b"
    r"(?![ \t]+(?:with|who|in|at|of|from)\b|['\u2019])",
    re.IGNORECASE,
)
# what happened to the people and no whole at all: "Overall, 3.0 % withdrew consent", "25 % of
# them relapsed" (leaks17); since leaks19 also what they had, underwent or needed ("6.1 % had
# a dose reduction", "9.1 % developed grade 3 toxicity")
_EVENT_VERBS = "had|has|have|experienced|developed|underwent|required|received|needed|suffered"
_BARE = re.compile(
    _P + r"[ \t]+(?:of[ \t]+(?:them|these|those)[ \t]+)?"
    r"(?:(?:had[ \t]+|have[ \t]+|were[ \t]+|was[ \t]+)?(?:" + OUTCOME_WORDS + r")|" + _EVENT_VERBS + r")\b",
    re.IGNORECASE,
)
# "a dose reduction occurred in 6.1 %", "was seen in 9.1 %": the share after its event, of no
# named whole (a named one, "in 6.1 % of slices", is not the cohort's)
_OCCURRED_IN = re.compile(
    r"\b(?:occurred|happened|(?:was|were)[ \t]+(?:seen|observed|reported|found|needed|required))"
    r"[ \t]+in[ \t]+" + _P + r"(?![ \t]*(?:of|among)\b)",
    re.IGNORECASE,
)
# "Relapse rate: 6.1 %", "- Dose reduction (%): 6.1 %": a named share on a line of its own
# (since leaks20 also with a full stop: "Relapse: 61 per mille.")
_NAMED = re.compile(
    r"^[ \t]*(?:[-*+][ \t]+)?(?P<name>[A-Za-z][A-Za-z0-9 ()%\-_/]{0,60}?)[ \t]*:[ \t]*"
    + _P
    + r"[ \t]*\.?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# "3.8 % of the patients at site B died": a share of a site's or an arm's people (leaks17)
_OF_GROUP = re.compile(
    _P + r"[ \t]+of[ \t]+(?:the[ \t]+|all[ \t]+)?"
    r"(?:patients|participants|subjects|cases|people)[ \t]+(?:at|in|from|of)[ \t]+(?:the[ \t]+)?"
    r"(?:site|centre|center|hospital|arm|group)[ \t]+(?P<label>[A-Za-z0-9]{1,20})\b",
    re.IGNORECASE,
)
_SHARE_OF = re.compile(r"%[ \t]+(?:of|among)[ \t]", re.IGNORECASE)
# the literals that let a pattern run at all (each opens on a look-behind or a word boundary)
_OCCURRED_WORDS = ("occurred", "happened", "seen", "observed", "reported", "found", "needed", "required")
_LINE_ENDS_IN_PERCENT = re.compile(r"%[ \t]*\.?[ \t]*$", re.MULTILINE)
_CLAUSE_START = re.compile(r"[.;:!?\n][^.;:!?\n]*$")
_NAME_WORDS = re.compile(r"[A-Za-z]+")
_SHARE_NAME_WORDS = frozenset("rate rates share proportion percentage percent pct fraction".split())
_BARE_WORDS = tuple({*OUTCOME_WORDS.split("|"), *_EVENT_VERBS.split("|")})
# a bare share's object is the data's where a data noun is among its first words ("had
# missing values", "had incomplete records", leaks20)
_OBJECT_WORDS = 4
# a share in other spellings (leaks20): "one in eleven", "2 out of every 33"; "61 per mille", "61 ‰"
_SMALL_NUMBER = r"\d{1,5}|" + "|".join(sorted(VALUES, key=len, reverse=True))
_RATIO = re.compile(
    rf"\b(?P<k>{_SMALL_NUMBER})[ \t]+(?:in|out[ \t]+of|of[ \t]+every|per)[ \t]+(?:every[ \t]+)?"
    rf"(?P<n>{_SMALL_NUMBER})\b"
    rf"(?![.,]\d)(?P<noun>[ \t]+(?:{PEOPLE_WORDS})\b)?",
    re.IGNORECASE,
)
_RATIO_WORDS = (" in ", " out of ", " of every ", " per ")
# "one patient in eleven" (the people between the two numbers), "every eleventh patient" (leaks21)
_PEOPLE_RATIO = re.compile(
    rf"\b(?P<k>{_SMALL_NUMBER})[ \t]+(?P<noun>{PEOPLE_WORDS})[ \t]+(?:in|out[ \t]+of|of[ \t]+every)[ \t]+"
    rf"(?:every[ \t]+)?(?P<n>{_SMALL_NUMBER})\b(?![.,]\d)",
    re.IGNORECASE,
)
_ORDINALS = {
    w: i + 2
    for i, w in enumerate(
        "second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
        "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split()
    )
}
_EVERY_NTH = re.compile(
    r"\bevery[ \t]+(?P<n>\d{1,5}(?:st|nd|rd|th)|" + "|".join(_ORDINALS) + r")[ \t]+"
    rf"(?P<noun>{PEOPLE_WORDS})\b",
    re.IGNORECASE,
)
# "0.061 of the patients": a proportion of people written as a decimal (leaks21)
_PROPORTION_OF = re.compile(
    r"(?<![\w.])0?\.(?P<digits>\d{1,5})[ \t]+of[ \t]+(?P<whole>(?:the[ \t]+|all[ \t]+)?"
    rf"(?:{PEOPLE_WORDS}|cohort)\b)",
    re.IGNORECASE,
)
# "6.1 percent", "6.1 per cent", "6.1 pct": a percentage in words
_PERCENT_WORDS = re.compile(
    r"(?<![\w.])(\d{1,3}(?:\.\d{1,3})?)[ \t]*(?:percent|per[ \t]+cent|pct)\b", re.IGNORECASE
)
_PER_MILLE = re.compile(
    r"(?<![\w.])(?P<v>\d{1,4})(?:\.(?P<d>\d{1,2}))?[ \t]*(?:\u2030|per[ \t]*mill?e?\b|per[ \t]+thousand\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ProseShare:
    """A share in a sentence: where, its value as written, and whose (``total``, a site)."""

    start: int
    percent: str
    decimals: int
    group: str | None  # the site's or arm's label; None for the whole cohort


def prose_shares(text: str) -> list[ProseShare]:
    """The shares of people a text's sentences state, in order. Each pattern is tried only
    where its literal words occur: they open with a look-behind and a digit, tried at every
    digit of an encoded blob or a log."""
    head = as_percentages(text[:MAX_HEAD])
    if "%" not in head:
        return []
    lower = head.lower()
    share_of = _SHARE_OF.search(head) is not None
    found: list[tuple[int, re.Match[str], str | None]] = []
    if share_of:
        found += [(m.start(), m, None) for m in _OF_COHORT.finditer(head)]
        found += [(m.start(), m, m.group("label")) for m in _OF_GROUP.finditer(head)]
    if any(w in lower for w in _BARE_WORDS):
        found += [
            (m.start(), m, None)
            for m in _BARE.finditer(head)
            if not _of_things(head, m.start()) and not _of_data(head, m.end())
        ]
    if any(f"{w} in" in lower for w in _OCCURRED_WORDS):
        found += [
            (m.start("p"), m, None) for m in _OCCURRED_IN.finditer(head) if not _of_things(head, m.start())
        ]
    if _LINE_ENDS_IN_PERCENT.search(head):
        found += [(m.start("p"), m, None) for m in _NAMED.finditer(head) if _people_share(m.group("name"))]
    return [
        ProseShare(start, m.group("p"), len(m.group("d") or ""), group)
        for start, m, group in sorted(found, key=lambda f: f[0])
    ]


def as_percentages(text: str) -> str:
    """``text`` with each share in another spelling written as a percentage (leaks20): in
    words ("6.1 percent", "6.1 per cent"), a ratio ("one in eleven patients" is "9.091 % of
    patients", to three decimals, which tell 3 of 33 from any other count of 33) and a
    per-mille ("61 per mille", "61 ‰" is "6.1 %").
    A ratio that is no share (the first not less than the second) stays."""
    lower = text.lower()
    if "percent" in lower or "per cent" in lower or "pct" in lower:
        text = _PERCENT_WORDS.sub(r"\1 %", text)
    if "\u2030" in text or "per mil" in lower or "permil" in lower or "per thousand" in lower:
        text = _PER_MILLE.sub(_per_mille, text)
    if any(w in lower for w in _RATIO_WORDS):
        text = _PEOPLE_RATIO.sub(_people_ratio, text)
        text = _RATIO.sub(_ratio, text)
    if "every" in lower:
        text = _EVERY_NTH.sub(_every_nth, text)
    if " of " in lower:
        text = _PROPORTION_OF.sub(_proportion, text)
    return text


def _every_nth(m: re.Match[str]) -> str:
    """ "every eleventh patient" is one of every eleven: 9.091 % of patients."""
    nth = m.group("n").lower()
    n = int(nth[:-2]) if nth[0].isdigit() else _ORDINALS[nth]
    if n < 2:
        return m.group(0)
    return f"{100 / n:.3f} % of {_plural(m.group('noun'))}"


def _people_ratio(m: re.Match[str]) -> str:
    """ "one patient in eleven" is "9.091 % of patients", as "one in eleven patients" is."""
    k, n = _number(m.group("k")), _number(m.group("n"))
    if not 0 < k < n:
        return m.group(0)
    return f"{100 * k / n:.3f} % of {_plural(m.group('noun'))}"


def _plural(noun: str) -> str:
    """``patient`` -> ``patients``: the share readers name a whole in the plural."""
    return noun if noun.lower().endswith(("s", "people", "men", "children")) else noun + "s"


def _proportion(m: re.Match[str]) -> str:
    """ "0.061 of the patients" is 6.1 % of them: the percentage keeps the proportion's digits."""
    digits = m.group("digits")
    value = int(digits) / 10 ** (len(digits) - 2)
    return f"{value:.{max(0, len(digits) - 2)}f} % of {m.group('whole')}"


def _per_mille(m: re.Match[str]) -> str:
    value = float(f"{m.group('v')}.{m.group('d') or 0}") / 10
    return f"{value:.{len(m.group('d') or '') + 1}f} %"


def _ratio(m: re.Match[str]) -> str:
    k, n = _number(m.group("k")), _number(m.group("n"))
    if not 0 < k < n:
        return m.group(0)
    noun = m.group("noun")
    return f"{100 * k / n:.3f} %" + (f" of{noun}" if noun else "")


def _number(word: str) -> int:
    return int(word) if word.isdigit() else VALUES[word.lower()]


def _of_data(text: str, end: int) -> bool:
    """Whether a bare share's object is the data ("had missing values", "had incomplete
    records"): a data noun among its first four words (leaks20)."""
    clause = re.split(r"[.;:!?\n]", text[end : end + 120], maxsplit=1)[0]
    words = [w.lower() for w in _NAME_WORDS.findall(clause)[:_OBJECT_WORDS]]
    return any(w in DATA_NOUNS for w in words) and not any(people_word(w) for w in words)


def _of_things(text: str, start: int) -> bool:
    """Whether the clause before ``start`` names things ("Of the lesions, ..."): the share is
    theirs, not the cohort's."""
    clause = _CLAUSE_START.search(text, max(0, start - 200), start)
    before = text[clause.start() + 1 if clause else max(0, start - 200) : start]
    return any(thing_word(w) or w.lower() in DATA_NOUNS for w in _NAME_WORDS.findall(before))


def _people_share(name: str) -> bool:
    """A line's name that says a share of people: a share word or a word for people or their
    outcome (``Relapse rate``, ``Relapsed``), and no metric's or data's name (``Error rate``,
    ``Missing``)."""
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    said = any(w in _SHARE_NAME_WORDS or people_word(w) for w in words)
    return said and not is_metric(name)
