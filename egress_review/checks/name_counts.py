"""Small counts written into names: file names, column headers, JSON keys, glued tokens (leaks12).

A count leaves as surely in ``relapsed (n=3)`` as a column header, in a file called
``n3_relapsed.csv``, in a JSON key ``auc_site_B_n3`` or in a log token ``site_A_had_3`` as in
a cell; the table rules read cells and never these. Three shapes are read:

* **an explicit n**: ``n=3``, ``N: 3``, ``(n = 3)`` inside a name. Unambiguous: it gets the
  threshold rule's outcome (block by default), as a cell would.
* **a glued n**: ``n3``, ``n_3`` as a ``_``/``-``-delimited part of a name, lower case only
  (upper-case ``N3`` is a nodal stage in TNM staging; ``n4`` before ``bias``, ``itk``,
  ``corr``, ``iter``, ``field``, ``conv`` or ``shrink`` is N4 bias-field correction). Also the
  threshold rule's outcome.
* **a count word glued to a number**: ``had_3``, ``died_2``, ``3pts``, ``3_deaths`` (a people
  word only after the number: ``case_3`` is a pseudonym).
  Less certain (``had_3_layers``): `sdc.prose_counts` (flag by default), as prose is.

What the job wrote is reviewer-only evidence; the requester sees how many and where (a fixed
word: file name, header, key, text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from egress_review.checks.model import CheckResult, action_outcome
from egress_review.checks.tables import MAX_CELLS_REPORTED
from tre.plural import agree, count
from tre.policy import Policy, SdcRules

_EDGE_BEFORE = r"(?:^|(?<=[_\-\s(\[/.,;:|]))"
_EDGE_AFTER = r"(?=$|[_\-\s)\].,;:|%])"
_EXPLICIT = re.compile(r"(?<![A-Za-z0-9\\])[nN]\s*[=:]\s*(?P<num>\d{1,4})(?![\d.]|[A-Za-z])")
_GLUED_N = re.compile(
    _EDGE_BEFORE + r"n_?(?P<num>\d{1,4})" + _EDGE_AFTER + r"(?!_?(?:bias|itk|corr|iter|field|conv|shrink))"
)
# after the number, a word that counts people ("3pts", "3_deaths"); before it only an outcome
# ("had_3", "died_2"): "case_3", "patient_3" and "subj_3" are pseudonyms, not counts
_OUTCOMES = r"had|deaths?|died|relapsed|relapses?|deceased|withdrew|excluded"
_PEOPLE = r"pts?|patients?|pats?|cases?|subjects?|subj|people|participants?"
_WORD_NUM = re.compile(
    _EDGE_BEFORE + rf"(?:{_OUTCOMES})[_\-]?(?P<num>\d{{1,4}})" + _EDGE_AFTER, re.IGNORECASE
)
_NUM_WORD = re.compile(
    _EDGE_BEFORE + rf"(?P<num>\d{{1,4}})[_\-]?(?:{_PEOPLE}|{_OUTCOMES})" + _EDGE_AFTER, re.IGNORECASE
)
# the two word patterns on a text: only tokens that glue a digit to a letter or an underscore
# are read (a sentence's "3 patients" is the prose reader's); a token touching "+", "/" or
# "=" is read as base64 or a path, whose letters and digits fall together by chance; one over
# 130 characters is data, not a name
_GLUED_TOKEN = re.compile(
    r"(?<![\w+/=\-])[\w\-]{0,64}?(?:\d[_\-]?[A-Za-z]|[A-Za-z][_\-]?\d)[\w\-]{0,64}(?![\w+/=\-])"
)


def _small(raw: str, rules: SdcRules) -> bool:
    return 0 < int(raw) < rules.threshold


def name_counts(name: str, rules: SdcRules) -> tuple[list[str], list[str]]:
    """(explicit, glued) small counts in one name: ``n=3``/``n3`` first, ``had_3``/``3pts`` second."""
    explicit = [m.group(0) for m in _EXPLICIT.finditer(name) if _small(m.group("num"), rules)]
    explicit += [m.group(0) for m in _GLUED_N.finditer(name) if _small(m.group("num"), rules)]
    worded = [
        m.group(0) for p in (_WORD_NUM, _NUM_WORD) for m in p.finditer(name) if _small(m.group("num"), rules)
    ]
    return explicit, worded


# where a glued count may be: one regex pass over the whole text finds these few places and
# only their tokens are read (reading every token of a training log cost a quarter more time)
_CANDIDATE = re.compile(
    r"(?:^|(?<=[_\-\s(\[/.,;:|]))n_?\d"
    rf"|(?i:\d[_\-]?(?:{_PEOPLE}|{_OUTCOMES})|(?:{_OUTCOMES})[_\-]?\d)",
    re.MULTILINE,
)
_TOKEN_CHARS = re.compile(r"[\w\-+/=]{0,140}$")
_TOKEN_TAIL = re.compile(r"[\w\-+/=]{0,140}")


def text_token_counts(text: str, rules: SdcRules) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Counts glued into the tokens of a text (``site_A_had_3``, ``3pts``, ``cohort_n3``)."""
    explicit: list[dict[str, object]] = []
    worded: list[dict[str, object]] = []
    seen: set[int] = set()
    for c in _CANDIDATE.finditer(text):
        head = _TOKEN_CHARS.search(text, max(0, c.start() - 140), c.start())
        start = head.start() if head else c.start()
        if start in seen:
            continue
        seen.add(start)
        tail = _TOKEN_TAIL.match(text, c.start())
        end = tail.end() if tail else c.end()
        m = _GLUED_TOKEN.fullmatch(text, start, end)
        if m is None:
            continue  # a path, base64, or data over 130 characters
        token = m.group(0)
        hard, soft = name_counts(token, rules)
        hard = [h for h in hard if not _EXPLICIT.match(h)]  # "n=3" in text: text_counts reads it
        line_no = text.count("\n", 0, start) + 1
        if hard and len(explicit) < MAX_CELLS_REPORTED:
            explicit.append({"line": line_no, "token": token[:80]})
        elif soft and len(worded) < MAX_CELLS_REPORTED:
            worded.append({"line": line_no, "token": token[:80]})
        if len(explicit) >= MAX_CELLS_REPORTED and len(worded) >= MAX_CELLS_REPORTED:
            break
    return explicit, worded


def check_name_counts(names: Iterable[tuple[str, str]], policy: Policy) -> list[CheckResult]:
    """Findings for counts in ``names``: (where, name) pairs, ``where`` one of the fixed words
    'file name', 'column header', 'key', 'text'."""
    rules = policy.sdc
    hard: list[dict[str, object]] = []
    soft: list[dict[str, object]] = []
    for where, name in names:
        explicit, worded = name_counts(name[:512], rules)
        if explicit and len(hard) < MAX_CELLS_REPORTED:
            hard.append({"where": where, "name": name[:80]})
        elif worded and len(soft) < MAX_CELLS_REPORTED:
            soft.append({"where": where, "name": name[:80]})
    return _results(hard, soft, policy)


def check_text_token_counts(text: str, policy: Policy) -> list[CheckResult]:
    """`check_name_counts` for the tokens of a text."""
    explicit, worded = text_token_counts(text, policy.sdc)
    return _results(
        [{"where": "text", **e} for e in explicit], [{"where": "text", **w} for w in worded], policy
    )


def _results(
    hard: list[dict[str, object]], soft: list[dict[str, object]], policy: Policy
) -> list[CheckResult]:
    rules = policy.sdc
    out: list[CheckResult] = []
    for found, check, action, what in (
        (hard, "sdc:threshold", rules.threshold_action, "a count of n"),
        (soft, "sdc:prose", rules.prose_counts, "a number glued to a word that counts people"),
    ):
        if not found:
            continue
        places = sorted({str(f["where"]) for f in found})
        out.append(
            CheckResult(
                check=check,
                outcome=action_outcome(action),
                reason=f"{count(len(found), 'name or token', 'names or tokens')} "
                f"{agree(len(found), 'holds', 'hold')} {what} below the threshold of "
                f"{rules.threshold} (in: {', '.join(places)})",
                evidence={
                    "threshold": rules.threshold,
                    "where": places,
                    "lines": sorted({int(str(f["line"])) for f in found if "line" in f}),
                    "reviewer_only": {"names": found},
                },
            )
        )
    return out
