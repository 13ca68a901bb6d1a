"""Counts released as shares, and counts a table implies without stating (leaks14b).

A count released as ``relapsed,12`` comes back as ``relapsed_pct,11.0`` next week: against the
released total of 100 that is 11 patients, one fewer. And a mean with its sum
(``age_mean 61.2``, ``age_sum 6059``) states the number of people as surely as ``n 99``.

* `pct_column` recognises a percentage column (``relapsed_pct``, ``% relapsed``,
  ``relapsed (%)``) and names the count it is a share of.
* Where the row also states the denominator (a count column that names no one in particular:
  ``n``, ``patients``), the share becomes that count (`share_count`) and is stored as one.
  Without a denominator it is stored as a share, under `share_key` (its decimals kept in the
  key, since ``11`` and ``11.0`` are not the same precision), and compared when checking
  against the counts and totals released for the same row (`share_differs`).
* `count_from_mean_and_sum` reads ``n`` back from a mean and a sum of the same quantity.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

_PCT_WORDS = re.compile(r"(?:^|[\s_(\[-])(?:pct|percent|percentage|perc)(?=$|[\s_)\]-])|%", re.IGNORECASE)
# ``relapse_share 0.061`` is a proportion as surely as ``relapse_fraction`` (leaks19)
_PROPORTION_WORDS = re.compile(
    r"(?:^|[\s_(\[-])(?:proportion|prop|fraction|frac|share)(?=$|[\s_)\]-])", re.IGNORECASE
)
# ``relapsed_permille 61`` of 33 is 2 people (leaks20): a share per thousand
_PER_MILLE_WORDS = re.compile(r"(?:^|[\s_(\[-])per[\s_-]?mill?e(?=$|[\s_)\]-])|\u2030", re.IGNORECASE)
# ``relapse_rate 0.0303`` of 33 is 1 person (leaks17): a rate that is a fraction of the row's
# people. Not a rate per person-time or per 1000 (``rate_per_1000_py``), nor a machine's or a
# body's rate (``learning_rate``, ``heart_rate``): those are no share of anyone.
_RATE = re.compile(r"(?:^|[\s_(\[-])rate(?=$|[\s_)\]-])", re.IGNORECASE)
_NOT_A_SHARE_RATE = frozenset(
    "per py pyrs pys person persons years months days 100 1000 10000 100000 1k 10k 100k learning lr "
    "heart pulse respiratory breathing flow infusion sampling frame bit refresh decay dropout dose "
    "growth clearance filtration".split()
)
# A cell that is a number or a percentage (``12``, ``-3.5``, ``4,2``, ``25%``), not a label
NUMERIC_CELL = re.compile(r"^[+-]?\d+(?:[.,]\d+)?%?$")
# ``6.1 percent``, ``6.1 per cent``, ``6.1 pct`` are percentages as ``6.1%`` is (leaks20)
_PERCENT_SIGN = r"(?:%|percent|per[ \t]*cent|pct)"
_PERCENT_STRING = re.compile(rf"^\s*\d{{1,3}}(?:[.,]\d{{1,4}})?\s*{_PERCENT_SIGN}\s*$", re.IGNORECASE)
_PCT_VALUE = re.compile(rf"^(\d{{1,3}})(?:[.,](\d{{1,4}}))?\s*(?P<sign>{_PERCENT_SIGN})?$", re.IGNORECASE)
_SHARE_KEY = re.compile(r"^pct(\d):(.*)$")
_MEAN = re.compile(r"^(?:mean|avg|average)_(.+)$|^(.+)_(?:mean|avg|average)$")
_SUM = re.compile(r"^(?:sum|total)_(.+)$|^(.+)_(?:sum|total)$")
_EPS = 1e-9
# shares that are a model's or a machine's, not of people (leaks16). Since leaks17 a class
# rule on the name's words, not substrings of a fixed list: ``progressed_pct`` (substring
# "progress") and ``recalled_pct`` ("recall") are shares of people, ``mape_pct`` and
# ``tpr_pct`` are a model's. A name is a metric's when one of its words is a performance or
# resource measure (`_METRIC_WORDS`, or a word opening with one of `_METRIC_STEMS`); a word for
# people or what happened to them (``relapsed``) wins.
_METRIC_WORDS = frozenset(
    "dice iou jaccard dsc auc auroc auprc roc ppv npv tpr fpr tnr fnr fdr acc accuracy precision recall "
    "f1 f1score fscore error errors err loss mae mse rmse nrmse mape smape bias kappa icc ccc r2 rsquared "
    "agreement overlap coverage confidence ci cv power cpu gpu memory mem ram disk vram util utilisation "
    "utilization occupancy throughput latency progress variance explained snr cnr psnr ssim hausdorff "
    "hd hd95 assd asd msd youden brier calibration concordance c_index cindex map miou".split()
)
_METRIC_STEMS = ("sensitiv", "specific", "accura", "utili", "precis")
# A measured quantity's change (``volume_change_pct``, ``dose_reduction_pct``,
# ``weight_loss_pct``) names either the change of a measurement or the share of people whom the
# change happened to (a dose reduction is an event of treatment): the name alone cannot tell
# (leaks18). It is a measurement's where the name says a statistic of it (``mean_``,
# ``median_``, ``relative_``) or the table beside it is a measurement's or a model's (another
# column is a metric by its words, or states a unit: ``dice_pct``, ``hd95_mm``); else people's.
_MEASURE_WORDS = frozenset(
    "volume size diameter length area dose intensity signal weight bmi density suv hu mass width depth "
    "thickness uptake".split()
)
_CHANGE_WORDS = frozenset(
    "change growth difference diff improvement reduction increase decrease delta loss gain shift drop "
    "rise escalation variation".split()
)
# A change with no direction (leaks19): ``volume_change_pct``, ``hu_shift_pct`` name how much a
# measurement moved, which happens to every patient; a share of people is of those to whom
# something happened in one direction (a dose reduction, a weight loss, a tumour's increase). A
# name whose only change words are these is a measurement's, unless its table's every row
# states a whole count of that row's people (`undirected_change`, `derived_counts`).
_UNDIRECTED_CHANGE_WORDS = frozenset("change difference diff delta shift variation".split())
_STATISTIC_WORDS = frozenset(
    "mean median avg average relative rel absolute abs sd std stdev iqr min max geomean".split()
)
_UNIT_WORDS = frozenset("mm cm ml cc mm3 cm3 hu mgy gy kg ms sec mbq".split())
# A share of things, not of people (leaks18): a share of voxels, slices, pixels or of lesions'
# volume is no share of the cohort, though the dataset's cohort size is now known.
_THING_WORDS = frozenset(
    "voxel voxels pixel pixels slice slices image images frame frames series scans volume volumes area "
    "areas lesion lesions nodule nodules mask masks region regions roi rois tissue file files byte "
    "bytes".split()
)
# A data split's share (``train_pct``, ``test_split_fraction``): of the cohort's patients,
# and so always a whole count of them, but it says nothing about anyone (leaks18)
SPLIT_WORDS = frozenset(
    "train training test testing val valid validation holdout tuning dev split fold".split()
)
_SHARE_WORDS = frozenset("pct percent percentage fraction frac proportion prop share".split())
# A share of the data, not of people (leaks19): ``missing_pct``, ``pct_missing_values``,
# ``completeness_pct``. Only where the name is nothing but such words, split words and share
# words: ``missing_followup_patients_pct`` names people, ``completed_pct`` an outcome.
_DATA_WORDS = frozenset(
    "missing missingness completeness available availability imputed null nulls nan na empty duplicate "
    "duplicates invalid corrupt corrupted unreadable".split()
)
# ``records`` since leaks20: "6.1 % of records had no stage" is the data's share
DATA_NOUNS = frozenset(
    "data value values field fields entry entries cell cells label labels record records".split()
)
_DATA_OWN = SPLIT_WORDS | _DATA_WORDS
# the words a share of the data's name is made of (built once: leaks20)
_DATA_SHARE_NAME = _DATA_OWN | _SHARE_WORDS | DATA_NOUNS
# A metric written as a phrase (``false positive rate``, ``positive predictive value``, ``area
# under curve``, ``root mean squared error``): three or more words whose initials, past these
# small words, spell a metric of `_METRIC_WORDS` (leaks19: their percentages were read as
# people's shares)
_PHRASE_SMALL_WORDS = frozenset("the of a an".split())
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")


def pct_column(header: str) -> str | None:
    """The name of the count a percentage or proportion column is a share of
    (``relapsed_pct``, ``relapsed_proportion`` -> ``relapsed``), or None if ``header`` names no
    share. A bare ``%`` is a share of the row's count column itself: ``n`` (and so compared
    with totals, which is what it is)."""
    words = _PCT_WORDS if _PCT_WORDS.search(header) else _PROPORTION_WORDS
    if _PER_MILLE_WORDS.search(header):
        words = _PER_MILLE_WORDS
    elif not words.search(header):
        if not _proportion_rate(header):
            return None
        words = _RATE
    rest = words.sub(" ", header)
    rest = re.sub(r"[^A-Za-z0-9]+", "_", rest).strip("_").lower()
    return rest or "n"


def _proportion_rate(header: str) -> bool:
    """Whether ``header`` names a rate that is a fraction of people (``relapse_rate``)."""
    if not _RATE.search(header):
        return False
    return _NOT_A_SHARE_RATE.isdisjoint(w.lower() for w in _WORD_SPLIT.split(header) if w)


def pct_value(cell: str, header: str = "") -> tuple[float, int] | None:
    """A share's value in percent and its number of decimals (``11.0`` -> (11.0, 1)); a
    proportion column's ``0.11`` (``header`` names a proportion, no ``%``) is (11.0, 0), a
    per-mille column's ``61`` (6.1, 1)."""
    m = _PCT_VALUE.match(cell.strip())
    if not m:
        return None
    decimals = len(m.group(2) or "")
    value = float(f"{m.group(1)}.{m.group(2) or 0}")
    if header and _PER_MILLE_WORDS.search(header):
        return (round(value / 10, decimals + 1), decimals + 1) if value <= 1000 else None
    if (
        header
        and not m.group("sign")  # ``6.1 %`` under ``share`` is a percentage, not a proportion
        and not _PCT_WORDS.search(header)
        and (_PROPORTION_WORDS.search(header) or _proportion_rate(header))
    ):
        if value > 1:
            return None
        return round(value * 100, max(0, decimals - 2)), max(0, decimals - 2)
    return (value, decimals) if value <= 100 else None


def is_metric(name: str, siblings: Iterable[str] = ()) -> bool:
    """Whether a share's name (``dice_pct``, ``sensitivity``, ``voxels_pct``) is not people's
    (``progressed_pct``, ``recalled_pct``): judged word by word (see `_METRIC_WORDS`), a word
    for people or their outcome winning. A share of the data (``train_pct``, ``missing_pct``)
    is no one's. A measured quantity's change in one direction (``dose_reduction_pct``) is a
    metric only by a statistic word in its name or by a metric or unit among ``siblings`` (the
    other column names of its table, the other keys of its document); one with no direction
    (``volume_change_pct``) is a measurement's (`undirected_change`)."""
    words = _words(name)
    if _data_share(words):
        return True  # ``test_pct``, ``missing_pct``: a share of the data (leaks18, leaks19)
    change = not _MEASURE_WORDS.isdisjoint(words) and not _CHANGE_WORDS.isdisjoint(words)
    if not change and not _THING_WORDS.isdisjoint(words) and not any(_people_noun().match(w) for w in words):
        return True  # ``lesions_progressed_pct``: what happened to lesions, not to people
    if _people(words):
        return False
    if change:
        return (
            _undirected(words)
            or not _STATISTIC_WORDS.isdisjoint(words)
            or any(_metric_or_unit(_words(s)) for s in siblings if s != name)
        )
    return _metric_words(words) or not _THING_WORDS.isdisjoint(words)


def thing_word(word: str) -> bool:
    """Whether ``word`` names things (``voxels``, ``lesions``, ``slices``), not people: a
    sentence's share after it is theirs (`prose_shares`)."""
    return word.lower() in _THING_WORDS


def undirected_change(name: str) -> bool:
    """Whether ``name`` is a measured quantity's change with no direction (``volume_change_pct``,
    ``hu_shift_pct``) and nothing else makes it a metric: a share of people only where its
    table's every row says so (`derived_counts`)."""
    words = _words(name)
    return (
        not _MEASURE_WORDS.isdisjoint(words)
        and _undirected(words)
        and _STATISTIC_WORDS.isdisjoint(words)
        and not _data_share(words)
        and not _people(words)
    )


def _undirected(words: list[str]) -> bool:
    changes = _CHANGE_WORDS.intersection(words)
    return bool(changes) and changes <= _UNDIRECTED_CHANGE_WORDS


def _data_share(words: list[str]) -> bool:
    """A share of the data: a split's or the data's own (missing, complete), no other word."""
    return not _DATA_OWN.isdisjoint(words) and _DATA_SHARE_NAME.issuperset(words)


@functools.cache
def _people_noun() -> re.Pattern[str]:
    """A noun for people (``patients``, ``women``), not an outcome word; compiled once, on
    first use (text_counts imports this module)."""
    from egress_review.checks.text_counts import PEOPLE_WORDS

    return re.compile(rf"^(?:{PEOPLE_WORDS})$", re.IGNORECASE)


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD_SPLIT.split(name) if w]


def _people(words: list[str]) -> bool:
    from egress_review.checks.text_counts import people_word

    return any(people_word(w) for w in words)


def _metric_or_unit(words: list[str]) -> bool:
    """A metric by its words alone (no people word), or a column stating a unit."""
    if _people(words):
        return False
    return _metric_words(words) or not _UNIT_WORDS.isdisjoint(words)


def _metric_words(words: list[str]) -> bool:
    """A metric by one of its words (``dice``, ``sensitivity``) or its phrase's initials
    (``false positive rate``); the caller has ruled out a word for people."""
    if any(w in _METRIC_WORDS or w.startswith(_METRIC_STEMS) for w in words):
        return True
    spelled = [w for w in words if w not in _PHRASE_SMALL_WORDS and w not in _SHARE_WORDS]
    return len(spelled) >= 3 and "".join(w[0] for w in spelled) in _METRIC_WORDS


def is_percent_string(cell: str) -> bool:
    """Whether a cell is a share written as a percentage (``3.0%``, ``6,8 %``): one rule for a
    JSON string and a table's cell (leaks18). A signed one (``-2.5%``, ``+3.0%``) is a change,
    not a share of anyone."""
    return _PERCENT_STRING.match(cell) is not None


def all_percent(cells: Iterable[str]) -> bool:
    """Whether every non-empty cell is a share written as a percentage (`is_percent_string`):
    such a column is shares whatever its name."""
    written = [c for c in cells if c.strip()]
    return bool(written) and all(is_percent_string(c) for c in written)


def share_count(pct: float, decimals: int, denominator: float) -> float | None:
    """The whole count of which ``pct`` (stated to ``decimals``) is the share of
    ``denominator``, or None when no whole count gives that share (then it is not a share of
    it) or more than one does (then it tells no count)."""
    if denominator <= 0:
        return None
    half = 0.5 * 10**-decimals
    found = [k for k in _around(pct * denominator / 100) if abs(100 * k / denominator - pct) <= half + _EPS]
    return float(found[0]) if len(found) == 1 else None


def _around(x: float) -> range:
    return range(max(0, int(x) - 2), int(x) + 3)


def share_key(decimals: int, key: str) -> str:
    return f"pct{min(decimals, 9)}:{key}"


def parse_share_key(key: str) -> tuple[int, str] | None:
    """(decimals, the count's key) of a share key, or None for a count's key."""
    m = _SHARE_KEY.match(key)
    return (int(m.group(1)), m.group(2)) if m else None


def share_differs(pct: float, decimals: int, count: float, total: float, threshold: int) -> bool:
    """A share of ``total`` that is not ``count``'s but is that of a count less than
    ``threshold`` away from it: the two releases differ by a few people."""
    if total <= 0:
        return False
    half = 0.5 * 10**-decimals + _EPS

    def fits(k: float) -> bool:
        return abs(100 * k / total - pct) <= half

    if fits(count):
        return False
    return any(fits(count + d) or fits(count - d) for d in range(1, threshold))


def count_from_mean_and_sum(cells: dict[str, str]) -> float | None:
    """The number of people a mean and a sum of the same quantity imply (``sum / mean``), when
    exactly one whole number fits the mean as stated (``61.2`` is 61.15 to 61.25); ``cells``
    maps normalised names to the numbers as written."""
    means = {_base(_MEAN, k): v for k, v in cells.items() if _MEAN.match(k)}
    sums = {_base(_SUM, k): v for k, v in cells.items() if _SUM.match(k)}
    for base, mean_text in means.items():
        mean, total = _number(mean_text), _number(sums.get(base, ""))
        if mean is None or total is None or mean[0] <= 0 or total[0] <= 0:
            continue
        low = total[0] / (mean[0] + 0.5 * 10 ** -mean[1])
        high = total[0] / (mean[0] - 0.5 * 10 ** -mean[1]) if mean[0] > 0.5 * 10 ** -mean[1] else low * 2
        whole = [k for k in range(max(1, int(low)), int(high) + 2) if low - _EPS <= k <= high + _EPS]
        if len(whole) == 1:
            return float(whole[0])
    return None


def _number(text: str) -> tuple[float, int] | None:
    m = re.match(r"^\s*(\d{1,12})(?:\.(\d{1,6}))?\s*$", text)
    if not m:
        return None
    return float(f"{m.group(1)}.{m.group(2) or 0}"), len(m.group(2) or "")


def _base(pattern: re.Pattern[str], name: str) -> str:
    m = pattern.match(name)
    assert m is not None
    return m.group(1) or m.group(2)
