"""The study's flow said in a sentence (leaks21): "Of 35 patients screened, 33 were enrolled".

Each stage of a study's flow (CONSORT: screened, eligible, enrolled, randomised, analysed...)
is a size of the same cohort, nested in the one before, so two of them a few apart state the
few lost between them: 2 people who were screened and not enrolled. Tables and JSON keys are
read for this by `released._flow_differences` (leaks20); a report's sentences here:

* a sentence (or a list line: "screened 35 → eligible 34 → enrolled 33") that names two or
  more stages and states two counts a few apart, in any order ("35 screened; 33 enrolled",
  "We screened 40 patients and randomised 38");
* a fraction beside one stage ("33/35 enrolled", "enrolled: 33/35"): the whole is the stage
  before, and the rest (2) were lost.

A number that is a year, a percentage, a label's ("epoch 33/35 completed", "day 19") or of
things ("Of 35 slices screened, 33 were included", "33/35 sites enrolled") is no count of
people. Only lines that hold a stage word are read (a log without one costs a few `str.find`).

Since airlock round 18 a sentence that opens on the people of the one before ("Of these",
"Of whom", "Among them") is read together with it: "35 patients were screened. Of these, 33
were enrolled." is one statement of the flow. Two sentences without such words are read apart
(pairing any two sentences' counts would pair every two counts of a report).
"""

from __future__ import annotations

import bisect
import re

from egress_review.checks.model import CheckResult
from egress_review.checks.shares import thing_word
from tre.plural import count

FLOW_STAGES = frozenset(
    "screened assessed eligible enrolled enroled recruited registered consented randomised randomized "
    "allocated included analysed analyzed evaluable treated completed followed".split()
)
MAX_HEAD = 1024 * 1024  # the first MiB of a text, as the share readers read
_LINE_SEPARATORS = re.compile(r"[!?\n]|(?<!\d)\.(?!\d)")
_TOKEN = re.compile(r"(?P<num>(?<![\w.,/-])\d{1,6}(?![\w%]|[.,]\d|[ \t]*%))|(?P<word>[A-Za-z]+)")
_FRACTION = re.compile(r"(?<![\w/.:-])(?P<a>\d{1,6})[ \t]*/[ \t]*(?P<b>\d{1,6})(?![\w/.:-])")
# a number these name is no count of people: "epoch 33/35", "day 19", "week 2", "fold 3"
_LABELS = frozenset(
    "epoch epochs step steps iteration iter batch fold folds version day days week weeks month months year "
    "years table figure fig page section stage grade phase cycle visit run round slice series scan item "
    "line no number part level session dose fraction fractions".split()
)
# the things a count may be of, besides `shares.thing_word`'s: sites and their like
_NOT_PEOPLE = frozenset(
    "site sites centre centres center centers hospital hospitals scanner scanners institution "
    "institutions arm arms group groups study studies trial trials sample samples".split()
)
# a unit after a number makes it a measurement: "35 mm nodules"
_UNITS = frozenset("mm cm m ml l mg g kg gy cgy hu ms s sec min h hr hrs kvp mas kev mev px mbq".split())
_WORD = re.compile(r"[a-z]+")
_WORDS_AROUND = 3  # the words after a fraction (or before it) that may name its stage
# a sentence that opens on the people of the sentence before ("35 patients were screened. Of
# these, 33 were enrolled."): read with that sentence, as one (airlock round 18)
_BACK_REFERENCE = re.compile(r"[\s,;:(-]*(?:of|among|from|amongst)[ \t]+(?:these|them|whom|those)\b")


def flow_gaps(text: str, threshold: int) -> int:
    """How many sentences of ``text`` state two stages of the flow (or a fraction of one) a few
    people apart: less than ``threshold``."""
    head = text[:MAX_HEAD]
    lower = head.lower()
    if not any(stage in lower for stage in FLOW_STAGES):
        return 0
    gaps = 0
    previous = ""  # the sentence before, for one that opens "Of these" (airlock round 18)
    for line in lower.splitlines():
        if not any(stage in line for stage in FLOW_STAGES):
            previous = ""
            continue
        for sentence in _LINE_SEPARATORS.split(line):
            if not sentence.strip():
                continue
            gap = _sentence_gap(sentence, threshold)
            if not gap and previous and _BACK_REFERENCE.match(sentence):
                gap = _sentence_gap(f"{previous} {sentence}", threshold)
            gaps += gap
            previous = sentence
    return gaps


def _sentence_gap(sentence: str, threshold: int) -> int:
    """1 where ``sentence`` states a flow's small gap, else 0."""
    tokens = [(m.group("num"), m.group("word")) for m in _TOKEN.finditer(sentence)]
    words = [w for _, w in tokens if w]
    stages = {w for w in words if w in FLOW_STAGES}
    if not stages:
        return 0
    if "/" in sentence and _fraction_gap(sentence, threshold):
        return 1
    if len(stages) < 2:
        return 0
    counts = [int(n) for i, (n, _) in enumerate(tokens) if n and _people_count(tokens, i)]
    return int(any(0 < abs(a - b) < threshold for i, a in enumerate(counts) for b in counts[i + 1 :]))


def _people_count(tokens: list[tuple[str, str]], i: int) -> bool:
    """Whether the number at ``tokens[i]`` may count people: no year, no label before it, no
    thing after it."""
    value = int(tokens[i][0])
    before = tokens[i - 1][1] if i else ""
    after = tokens[i + 1][1] if i + 1 < len(tokens) else ""
    return not (
        1900 <= value <= 2100
        or before in _LABELS
        or (after and (thing_word(after) or after in _NOT_PEOPLE or after in _LABELS or after in _UNITS))
    )


def _fraction_gap(sentence: str, threshold: int) -> bool:
    """A fraction beside a stage word ("33/35 enrolled", "enrolled: 33/35") whose rest is under
    the threshold, unless a label ("epoch 33/35") or things ("33/35 sites") go with it."""
    # The sentence's words found once, and each fraction's neighbours looked up by position:
    # reading the words before each fraction anew was quadratic in a sentence of many
    # fractions ("epoch 1/2 " 100,000 times: hours; red team round 18).
    words = [(w.start(), w.group()) for w in _WORD.finditer(sentence)]
    starts = [start for start, _ in words]
    for m in _FRACTION.finditer(sentence):
        a, b = int(m.group("a")), int(m.group("b"))
        if not 0 < b - a < threshold:
            continue
        first_after = bisect.bisect_left(starts, m.end())
        last_before = bisect.bisect_left(starts, m.start())
        before = [w for _, w in words[max(0, last_before - _WORDS_AROUND) : last_before]]
        after = [w for _, w in words[first_after : first_after + _WORDS_AROUND]]
        if before and before[-1] in _LABELS:
            continue
        if after and (thing_word(after[0]) or after[0] in _NOT_PEOPLE or after[0] in _LABELS | _UNITS):
            continue
        if FLOW_STAGES.intersection(before + after):
            return True
    return False


def check_prose_flow(text: str, threshold: int) -> list[CheckResult]:
    """`sdc:flow_differencing` for a text whose sentences state the flow's small gaps."""
    return flow_differencing(flow_gaps(text, threshold), ("sentence states", "sentences state"), threshold)


def flow_differencing(gaps: int, lead: tuple[str, str], threshold: int) -> list[CheckResult]:
    """The one finding for small gaps between the flow's stages, in prose (here) or in a
    file's named counts (`released`): the same words and evidence wherever they were read."""
    if not gaps:
        return []
    return [
        CheckResult(
            check="sdc:flow_differencing",
            outcome="flag",
            reason=f"{count(gaps, *lead)} two stages of the study's flow (screened, enrolled, "
            f"analysed...) whose counts differ by less than the threshold of {threshold}: the "
            "difference is the number of people who left between the stages",
            evidence={"threshold": threshold, "count": gaps},
        )
    ]
