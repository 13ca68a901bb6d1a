"""Small counts written in text outside any table (leaks10).

A count leaves as surely in ``lung_n=3``, ``patients with relapse: 3`` or "3 patients had a
relapse" as in a CSV cell. Two readers, both on the standard library:

* **named values**: ``name=value`` pairs anywhere on a line (a log's ``site=B n=3``, a
  properties file) and ``name: value`` lines (a Markdown bullet list, a summary). The name is
  judged like a column header (`sdc.count_columns`, minus `sdc.parameter_columns`: a
  ``num_workers=4`` is a setting), or by a word that counts people (``patients with relapse``).
  A small value gets the threshold rule's outcome, as a cell would.
* **sentences**: a number under the threshold (digits or a number word) followed within two
  words by a noun that counts people (``3 patients``, ``Two patients died``, ``2 cases of``),
  a fraction with its percentage or such a noun (``3/120 (2.5%)``), and a percentage of a
  stated denominator (``2.5% of 120``: the count is 3). Prose is less certain than a table,
  so these get `sdc.prose_counts` (flag by default): the reviewers read the sentence.

What the job wrote (names, values, sentences) is reviewer-only evidence; the requester sees
line numbers and fixed words.
"""

from __future__ import annotations

import re

from egress_review.checks.model import CheckResult, action_outcome
from egress_review.checks.number_words import words_to_digits
from egress_review.checks.printed_arrays import named_arrays
from egress_review.checks.shares import share_count
from egress_review.checks.tables import MAX_CELLS_REPORTED, header_matches
from tre.plural import agree, count
from tre.policy import Policy, SdcRules

MAX_CHARS = 8 * 1024 * 1024  # a longer text is read for counts in its first 8 MiB only

PEOPLE_WORDS = (
    "patients?|subjects?|cases?|participants?|people|persons?|individuals?|women|men|children|boys|girls|"
    "deaths?|responders?|non-responders?|survivors?|donors?|volunteers?|smokers?|adults?|infants?|"
    "residents?|relapses?|admissions?|pregnancies"
)
# what happened to people, said of a number of them: "relapsed=3", "3 relapsed", "Two withdrew"
# (leaks11: a count with an outcome for a name passed)
OUTCOME_WORDS = "relapsed|died|deceased|withdrew|withdrawn|recurred|progressed|survived|responded|censored"
_PEOPLE = re.compile(rf"^(?:{PEOPLE_WORDS}|{OUTCOME_WORDS}|dead|alive)$", re.IGNORECASE)
NUMBER_WORDS = {
    w: i + 1
    for i, w in enumerate(
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
# words that may stand between a number and its noun ("3 male patients", "2 new cases") are
# adjectives; these would make it another quantity ("3 folds of 120 patients", "2 s per case")
_NOT_BETWEEN = frozenset(
    "of the a an per each every all and or than in from to for with by at on our these those other "
    "more fewer less times".split()
)

_KV = re.compile(r"(?<![\w.\-])([A-Za-z][\w.\-]{0,63})\s*=\s*(\d{1,9})(?![\w.%/]|\.\d)")
# a line ending in "name: value" (a bullet, a summary, a log line's message after its prefix)
_COLON = re.compile(
    r"(?:^|(?<=[\s:|>]))([A-Za-z][\w .()/\-]{0,63}?)(?:\s*:\s*|\t+)(\d{1,9}|"
    + "|".join(NUMBER_WORDS)
    + r")\s*(?:$|\|)",
    re.IGNORECASE,
)
# a JSON object inside a log line: {"site": "B", "n": 3}
_QUOTED = re.compile(r"\"([A-Za-z][\w .\-]{0,63})\"\s*:\s*(\d{1,9})(?=\s*[,}\]]|\s*$)")
# "3 of 120 patients", "three out of 120 cases": the count and its total
_OF = re.compile(
    r"(?<![\w.,/\-])(?P<num>\d{1,4}|"
    + "|".join(NUMBER_WORDS)
    + r")[ \t]+(?:out[ \t]+)?of[ \t]+(?:the[ \t]+|all[ \t]+)?"
    rf"(?P<d>\d{{2,7}})[ \t]+(?:[A-Za-z][\w\-]*[ \t]+){{0,2}}?(?:{PEOPLE_WORDS})\b",
    re.IGNORECASE,
)
# "Table 2 patients", "stage 3 cases", "fold 2 subjects": the number names something else
_LABEL_BEFORE = re.compile(
    r"(?:table|tab|figure|fig|section|appendix|chapter|step|epoch|fold|version|grade|stage|type|phase|day|"
    r"week|month|year|cohort|arm|group|site|page|line|no|number|item|part|level|class|category|batch|run|"
    r"trial|round|visit|cycle|lesion|slice|series|scan)\.?\s*$|#\s*$",
    re.IGNORECASE,
)
_NUMBER = r"(?<![\w.,/\-])(?P<num>\d{1,4}|" + "|".join(NUMBER_WORDS) + r")(?![\w%]|[.,]\d|-|\s*%)"
# words of a sentence are one space apart: a tab or a run of spaces is a column boundary of an
# aligned or tab-separated table (leaks16: "1      relapsed   22", month 1 of a long table,
# was read as "1 relapsed"), whose cells the table readers judge
_SENTENCE = re.compile(
    _NUMBER + rf" (?P<mid>(?:[A-Za-z][\w\-]* ){{0,2}}?)(?P<noun>{PEOPLE_WORDS})\b", re.IGNORECASE
)
# the outcome right after the number, as its verb: "3 relapsed", "two withdrew before". The
# rare word is found first and the number read back from it: a number-first pattern tried
# every number of a long log (a third more time for the prose reader)
_OUTCOME_WORD = re.compile(rf"\b(?:{OUTCOME_WORDS})\b", re.IGNORECASE)
_NUMBER_BEFORE = re.compile(_NUMBER + r" $", re.IGNORECASE)
_FRACTION = re.compile(
    r"(?<![\w/.])(?P<a>\d{1,4})\s*/\s*(?P<b>\d{2,7})(?![\w/.])"
    rf"(?P<tail>\s*\(\s*\d+(?:\.\d+)?\s*%\s*\)|[ \t]+(?:[A-Za-z][\w\-]*[ \t]+){{0,2}}?(?:{PEOPLE_WORDS})\b)",
    re.IGNORECASE,
)
# after "one patient": "in three", "out of every eleven" make it a share, not a count
# (leaks21), as "one in three patients" is; a whole in digits ("2 patients in 33", "2 patients
# out of 33") reads as the count of a stated total and stays a count
_RATIO_AFTER = re.compile(
    r"[ \t]+(?:in|per|(?:out[ \t]+)?of[ \t]+every)[ \t]+(?:every[ \t]+)?(?:"
    + "|".join(NUMBER_WORDS)
    + r")\b",
    re.IGNORECASE,
)
_RATIO_BEFORE = re.compile(
    r"\b(?:\d{1,5}|"
    + "|".join(NUMBER_WORDS)
    + rf")[ \t]+(?:(?:{PEOPLE_WORDS})[ \t]+)?(?:in|out[ \t]+of|of[ \t]+every|per)[ \t]+(?:every[ \t]+)?$",
    re.IGNORECASE,
)
# a fraction's words before its people that name other things: "33/35 sites enrolled patients"
_THINGS_BETWEEN = re.compile(
    r"[ \t]+(?:sites?|centres?|centers?|hospitals?|scanners?|arms?|groups?|institutions?|studies|trials?)\b",
    re.IGNORECASE,
)
# "2.5% of 120", and (leaks16) "12.5 % (of 8)" and "12.5 % of 8": a one-digit total only where
# exactly one whole count fits the share as written ("95 % of 5" folds fits none)
_PERCENT_OF = re.compile(
    r"(?<![\w.])(?P<p>\d{1,3}(?:\.\d+)?)\s*%\s*(?:\((?:of\s+)?(?=\d{1,7}\s*\))|(?:\([^()\n]{0,40}\)\s*)?"
    r"(?:of|among|in)\s+(?:the\s+|all\s+|our\s+)?)(?P<d>\d{1,7})(?![\w%]|\.\d)",
    re.IGNORECASE,
)
# "Of the 52 patients at site B, 3.8 % died": a share after its total in one clause (leaks16);
# "Among the 16 smokers, 12.5 % progressed" (leaks17)
_TOTAL_THEN_PERCENT = re.compile(
    r"\b(?:of|among)[ \t]+(?:the[ \t]+|all[ \t]+|our[ \t]+)?(?P<d>\d{2,7})[ \t]+"
    r"(?:[A-Za-z][\w\-]*[ \t]+){0,2}?"
    rf"(?:{PEOPLE_WORDS})\b[^.;%\n\d]{{0,40}}(?<![\w.])(?P<p>\d{{1,3}}(?:\.\d+)?)[ \t]*%",
    re.IGNORECASE,
)
# the word after a one-digit total, past up to two adjectives ("of 8 eligible patients")
_WORD_AFTER = re.compile(r"[ \t]+(?:[A-Za-z][\w\-]*[ \t]+){0,2}?([A-Za-z][\w\-]*)")
# "2 (6.1 %) patients relapsed", "two (6.1%) withdrew": the count, its share in brackets, then
# its noun (leaks19: the bracket stood between the number and its noun)
_COUNT_SHARE_NOUN = re.compile(
    r"(?<![\w.,/\-])(?P<num>\d{1,4}|"
    + "|".join(NUMBER_WORDS)
    + r")[ \t]*\([ \t]*\d{1,3}(?:[.,]\d{1,4})?[ \t]*%[ \t]*\)[ \t]+(?:[A-Za-z][\w\-]*[ \t]+){0,2}?"
    rf"(?:{PEOPLE_WORDS}|{OUTCOME_WORDS})\b",
    re.IGNORECASE,
)
# "relapsed patients (3)", "deaths (2)": the count in brackets after its noun (leaks12)
_PAREN_COUNT = re.compile(
    rf"\b(?:{PEOPLE_WORDS}|{OUTCOME_WORDS})[ \t]*\([ \t]*(?P<num>\d{{1,4}})[ \t]*\)", re.IGNORECASE
)
# a bare fraction "3/120": a count and its total unless a label names it ("epoch 3/200") or it
# is a progress bar ("3/120 [00:01<00:40]", "|  3/120") or a month ("3/2019") (leaks12)
_BARE_FRACTION = re.compile(r"(?<![\w/.:\-])(?P<a>\d{1,4})[ \t]*/[ \t]*(?P<b>\d{2,7})(?![\w/.:\-]|[ \t]*\[)")
_PROGRESS_BEFORE = re.compile(r"\|[ \t]*$")
# "of the 124 patients, 121 completed": the rest (3) is a count too (leaks12)
_OF_TOTAL = re.compile(
    r"\bof[ \t]+(?:the[ \t]+|all[ \t]+|our[ \t]+)?(?P<d>\d{2,7})[ \t]+(?:[A-Za-z][\w\-]*[ \t]+){0,2}?"
    rf"(?:{PEOPLE_WORDS})\b[ \t]*[,;:]?[ \t]+(?:only[ \t]+|just[ \t]+)?(?P<a>\d{{1,7}})(?![\w.%/])",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"\\[A-Za-z]+\{([^{}\n]*)\}|<[^<>\n]{0,200}>|\*\*|__")
# inline HTML elements vanish ("<b>2</b>" is "2"); the others separate cells like "|"
_INLINE_TAG = re.compile(r"</?(?:b|i|em|strong|span|code|sup|sub|a|u|small|mark)\b", re.IGNORECASE)


def people_word(word: str) -> bool:
    """Whether ``word`` is a noun for people or what happened to them (``patients``,
    ``relapsed``): a table label that says its numbers count people."""
    return bool(_PEOPLE.match(word))


def count_name(name: str, rules: SdcRules) -> bool:
    """Whether ``name`` (a key, a label before a colon) names a count of people."""
    norm = re.sub(r"[^a-z0-9%]+", "_", name.lower()).strip("_")
    if not norm or header_matches(norm, rules.parameter_columns):
        return False
    parts = [norm, *(p for p in re.split(r"[.\s]+", name.lower()) if p)]
    if any(header_matches(p, rules.count_columns) for p in parts):
        return True
    return any(_PEOPLE.match(w) for w in norm.split("_"))


def _plain(text: str) -> str:
    """\\num{4}, \\textbf{4}, <b>4</b> and **4** are the number itself, and so is "ninety-four"
    (leaks15); line breaks stay."""

    def plain(m: re.Match[str]) -> str:
        whole = m.group(0)
        if m.group(1) is not None or whole in ("**", "__") or _INLINE_TAG.match(whole):
            return m.group(1) or ""
        return " | " if whole.startswith("<") else ""

    return words_to_digits(_MARKUP.sub(plain, text[:MAX_CHARS]))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def named_counts(text: str, rules: SdcRules) -> list[dict[str, object]]:
    """``name=value`` pairs and ``name: value`` lines whose name is a count and value is small."""
    found: list[dict[str, object]] = []
    named: dict[str, bool] = {}  # a log repeats its few names on every line
    for line_no, line in enumerate(_plain(text).splitlines(), start=1):
        pairs = _KV.findall(line) if "=" in line else []
        if ":" in line or "\t" in line:
            pairs.extend(m.groups() for m in _COLON.finditer(line))
        if '":' in line:
            pairs.extend(m.groups() for m in _QUOTED.finditer(line))
        for name, raw in pairs:
            value = NUMBER_WORDS.get(raw.lower()) or int(raw)
            if not 0 < value < rules.threshold:
                continue
            if name not in named:
                named[name] = count_name(name, rules)
            if named[name]:
                if len(found) < MAX_CELLS_REPORTED:
                    found.append(
                        {"line": line_no, "name": name.strip()[:80], "value": raw, "text": line.strip()[:160]}
                    )
    return found


def prose_counts(text: str, rules: SdcRules) -> list[dict[str, object]]:
    """Small counts in sentences: a number before a noun that counts people, a fraction, a
    percentage of a stated denominator."""
    plain = _plain(text)
    found: list[tuple[int, str]] = []
    for m in _SENTENCE.finditer(plain):
        if any(w.lower() in _NOT_BETWEEN for w in m.group("mid").split()):
            continue
        if _RATIO_AFTER.match(plain, m.end()):
            continue  # "one patient in three": a share (`prose_shares` reads it), no count
        if _LABEL_BEFORE.search(plain, max(0, m.start() - 24), m.start()):
            continue
        raw = m.group("num").lower()
        value = NUMBER_WORDS.get(raw) or int(raw)
        if 0 < value < rules.threshold:
            found.append((m.start(), m.group(0)))
    lower = plain.lower()
    outcomes = [w for w in OUTCOME_WORDS.split("|") if w in lower]  # str.find: memory speed
    for word in _OUTCOME_WORD.finditer(plain) if outcomes else ():
        before = _NUMBER_BEFORE.search(plain, max(0, word.start() - 24), word.start())
        if before is None or _LABEL_BEFORE.search(plain, max(0, before.start() - 24), before.start()):
            continue
        raw = before.group("num").lower()
        if not raw.isdigit() and _RATIO_BEFORE.search(plain, max(0, before.start() - 40), before.start()):
            continue  # "one patient in three relapsed": the three is a ratio's whole (leaks21)
        value = NUMBER_WORDS.get(raw) or int(raw)
        if 0 < value < rules.threshold:
            found.append((before.start(), plain[before.start() : word.end()]))
    # each pattern needs a literal ("of", "/", "(", "%"): a text without it is not searched,
    # since a pattern that opens with a look-behind is tried at every position (leaks13: the
    # round-8 patterns cost a training log 25 %)
    has_of = "of" in lower
    for m in _OF.finditer(plain) if has_of else ():
        raw = m.group("num").lower()
        value = NUMBER_WORDS.get(raw) or int(raw)
        rest = int(m.group("d")) - value  # "121 of the 124 patients": 3 did not
        if value <= int(m.group("d")) and (0 < value < rules.threshold or 0 < rest < rules.threshold):
            found.append((m.start(), m.group(0)))
    for m in _OF_TOTAL.finditer(plain) if has_of else ():
        a, d = int(m.group("a")), int(m.group("d"))
        if a <= d and (0 < a < rules.threshold or 0 < d - a < rules.threshold):
            found.append((m.start(), m.group(0)))
    fraction_matches = list(_FRACTION.finditer(plain)) if "/" in plain else []
    fractions = {m.start() for m in fraction_matches}
    for m in fraction_matches:
        a, b = int(m.group("a")), int(m.group("b"))
        # "33/35 patients": the rest (2) is a count too, as in "33 of 35 patients" (leaks21),
        # unless things stand between ("33/35 sites enrolled patients")
        rest = 0 if _THINGS_BETWEEN.match(m.group("tail")) else b - a
        if a <= b and (0 < a < rules.threshold or 0 < rest < rules.threshold):
            found.append((m.start(), m.group(0)))
    for m in _BARE_FRACTION.finditer(plain) if "/" in plain else ():
        a, b = int(m.group("a")), int(m.group("b"))
        if m.start() in fractions or not (0 < a < rules.threshold <= b) or 1900 <= b <= 2100:
            continue  # "3/2019" is a month
        if _LABEL_BEFORE.search(plain, max(0, m.start() - 24), m.start()) or _PROGRESS_BEFORE.search(
            plain, max(0, m.start() - 8), m.start()
        ):
            continue
        found.append((m.start(), m.group(0)))
    for m in _COUNT_SHARE_NOUN.finditer(plain) if "(" in plain and "%" in plain else ():
        raw = m.group("num").lower()
        value = NUMBER_WORDS.get(raw) or int(raw)
        if 0 < value < rules.threshold and not _LABEL_BEFORE.search(plain, max(0, m.start() - 24), m.start()):
            found.append((m.start(), m.group(0)))
    for m in _PAREN_COUNT.finditer(plain) if "(" in plain else ():
        value = int(m.group("num"))
        if 0 < value < rules.threshold:
            found.append((m.start(), m.group(0)))
    for m in _PERCENT_OF.finditer(plain) if "%" in plain else ():
        count: float | None = float(m.group("p")) * int(m.group("d")) / 100
        if len(m.group("d")) == 1:
            after = _WORD_AFTER.match(plain, m.end())
            if after is not None and not _PEOPLE.match(after.group(1)):
                continue  # "80 % of 5 folds": a share of something else
            count = share_count(float(m.group("p")), len(m.group("p").partition(".")[2]), int(m.group("d")))
        if count is not None and 0.5 <= count < rules.threshold - 0.5:
            found.append((m.start(), m.group(0)))
    for m in _TOTAL_THEN_PERCENT.finditer(plain) if (has_of or "among" in lower) and "%" in plain else ():
        p = m.group("p")
        whole = share_count(float(p), len(p.partition(".")[2]), int(m.group("d")))
        if whole is not None and 0 < whole < rules.threshold:
            found.append((m.start(), m.group(0)))
    # a subgroup's size said above its table of shares (leaks17; only a text with a share word)
    from egress_review.checks.subgroup_shares import table_subgroup_shares

    found.extend(table_subgroup_shares(plain, rules.threshold))
    found.sort()
    return [
        {
            "line": _line_of(plain, start),
            "count": " ".join(words.split())[:120],
            # the sentence around it, for the reviewers to judge
            "sentence": " ".join(plain[max(0, start - 80) : start + len(words) + 80].split()),
        }
        for start, words in found[:MAX_CELLS_REPORTED]
    ]


def check_text_counts(text: str, policy: Policy, *, named: bool = True) -> list[CheckResult]:
    """Threshold findings for counts in named values (``named``: off where the file's own
    reader already took its keys as a table, YAML, TOML, INI) and in sentences."""
    rules = policy.sdc
    out: list[CheckResult] = []
    values = named_counts(text, rules) if named else []
    if named:  # "confusion matrix:\n[[25  3]\n [ 2  3]]" (airlock round 18)
        values += named_arrays(text[:MAX_CHARS], rules.threshold, lambda name: count_name(name, rules))
    if values:
        out.append(
            CheckResult(
                check="sdc:threshold",
                outcome=action_outcome(rules.threshold_action),
                reason=f"{count(len(values), 'count')} written as 'name = value' or 'name: value' "
                f"{agree(len(values), 'is', 'are')} below the "
                f"threshold of {rules.threshold} (e.g. line {values[0]['line']})",
                evidence={
                    "threshold": rules.threshold,
                    "lines": sorted({int(str(v["line"])) for v in values}),
                    "reviewer_only": {"cells": values},
                },
            )
        )
    sentences = prose_counts(text, rules)
    if sentences:
        out.append(
            CheckResult(
                check="sdc:prose",
                outcome=action_outcome(rules.prose_counts),
                reason=f"{count(len(sentences), 'small count')} written in sentences (a number "
                f"under the threshold "
                f"of {rules.threshold} counting patients, cases or subjects, or following from a fraction "
                f"or a percentage of a stated total; e.g. line {sentences[0]['line']})",
                evidence={
                    "threshold": rules.threshold,
                    "lines": sorted({int(str(s["line"])) for s in sentences}),
                    "reviewer_only": {"sentences": sentences},
                },
            )
        )
    return out


# the whole of a cohort said in a sentence (leaks14b): "of the 99 patients", "a total of 99
# patients", "99 patients were included": compared with the totals the project released
_TOTAL_PHRASE = re.compile(
    r"(?:\b(?:of|among|total[ \t]+of|cohort[ \t]+of|all)[ \t]+(?:the[ \t]+|all[ \t]+|our[ \t]+)?"
    rf"(?P<d>\d{{2,7}})[ \t]+(?:[A-Za-z][\w\-]*[ \t]+){{0,2}}?(?P<noun>{PEOPLE_WORDS})\b)"
    r"|(?:\b(?:comprised|comprising|consisted[ \t]+of|consisting[ \t]+of|we[ \t]+included|we[ \t]+enrolled|"
    r"we[ \t]+recruited|we[ \t]+analy[sz]ed|we[ \t]+studied)[ \t]+(?:a[ \t]+total[ \t]+of[ \t]+)?"
    rf"(?P<f>\d{{2,7}})[ \t]+(?:[A-Za-z][\w\-]*[ \t]+){{0,2}}?(?P<noun3>{PEOPLE_WORDS})\b)"
    rf"|(?:(?<![\w.,/\-])(?P<e>\d{{2,7}})[ \t]+(?:[A-Za-z][\w\-]*[ \t]+){{0,2}}?(?P<noun2>{PEOPLE_WORDS})"
    r"[ \t]+(?:were[ \t]+|was[ \t]+)?(?:included|enrolled|recruited|analy[sz]ed|eligible|in[ \t]+total)\b)",
    re.IGNORECASE,
)


# the sample size as statistics writes it (leaks15): a capital N is the whole sample by
# convention ("Patients (N = 99)", "N=99;"), a small n only after a word that says "all of
# them" ("the study cohort (n = 99)"): a small n alone is a subgroup's ("site A (n = 45)")
_SAMPLE_SIZE = re.compile(
    r"(?<![\w.\-])N[ \t]*=[ \t]*(?P<n>\d{2,7})(?![.,]?\d)"
    r"|\b(?:cohort|population|sample|overall|total|(?:all|whole)[ \t]+(?:the[ \t]+)?(?:"
    + PEOPLE_WORDS
    + r"))[ \t]*[(\[,:]?[ \t]*[nN][ \t]*=[ \t]*(?P<m>\d{2,7})(?![.,]?\d)"
)


def prose_totals(text: str) -> list[tuple[str, int]]:
    """(the noun, the number) of each cohort total a text states in a sentence, in order: the
    people of whom its other numbers are parts, which a later release may state one fewer.
    A sample size (``N = 99``) is a total of people under no particular noun."""
    plain = _plain(text[:MAX_CHARS])
    found: list[tuple[int, str, int]] = []
    for m in _TOTAL_PHRASE.finditer(plain):
        noun = (m.group("noun") or m.group("noun2") or m.group("noun3")).lower()
        found.append((m.start(), noun, int(m.group("d") or m.group("e") or m.group("f"))))
    for m in _SAMPLE_SIZE.finditer(plain):
        found.append((m.start(), "patients", int(m.group("n") or m.group("m"))))
    return [(noun, value) for _, noun, value in sorted(found)]
