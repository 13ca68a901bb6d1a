"""Whether two files of one request hold disjoint groups of people (leaks21).

`sdc:differencing_request` reads the same table twice, one row changed, as a difference of
two counts of the same people (``by_site_v1.csv`` ``E 37``, ``by_site_v2.csv`` ``E 35``). The
training and validation sets' tables are no such pair: ``train_by_site.csv`` and
``val_by_site.csv`` count disjoint patients under the same names, and any two of their counts
may be a few apart by chance; so are two folds' (``fold1``/``fold2``) and two arms' or sexes'.
Their files (or folders) are named for the group: names that differ only in such words are of disjoint
groups. Any other difference (``v1``/``v2``, a date, ``final``) is read as a revision of one
table, so the rule still compares them (deny by default).
"""

from __future__ import annotations

import re

from egress_review.checks.shares import SPLIT_WORDS

# the words that name a group the other file's group cannot hold: a data split, an arm, a sex
GROUP_WORDS = SPLIT_WORDS | frozenset(
    "internal external derivation development control controls treated treatment placebo "
    "intervention male female males females men women".split()
)
_TOKEN = re.compile(r"[a-z0-9]+")
# the spellings of one group, by the group they name (a word not here is its own group)
_SAME_GROUP = {
    word: group
    for group, words in {
        "train": "train training",
        "test": "test testing",
        "val": "val valid validation",
        "dev": "dev development",
        "control": "control controls",
        "treated": "treated treatment intervention",
        "male": "male males men",
        "female": "female females women",
    }.items()
    for word in words.split()
}
_NUMBERED = re.compile(r"^(?:fold|split|cv|set)(\d{1,3})$")  # fold1, split2, cv3


def disjoint_groups(name: str, other: str) -> bool:
    """Whether files ``name`` and ``other`` differ only in words naming disjoint groups
    (``train_by_site.csv``/``val_by_site.csv``, ``fold1``/``fold2``): at least one such word
    each, and no other difference."""
    # Each word read as the group it names, so that two spellings of one group are no two
    # groups: ``male``/``males``/``men``, ``train``/``training``, ``fold1``/``fold01`` (red
    # team round 18: each pair passed as disjoint, so one table released twice under them was
    # never compared).
    mine, theirs = {_group(t) for t in _tokens(name)}, {_group(t) for t in _tokens(other)}
    only_mine, only_theirs = mine - theirs, theirs - mine
    return bool(only_mine and only_theirs) and all(_group_word(t) for t in only_mine | only_theirs)


def _tokens(name: str) -> set[str]:
    """The words of a file's whole name, its folders' too (``train/by_site.csv`` and
    ``validation/by_site.csv`` differ in their folders only), without the extension."""
    stem = name.lower().rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name.lower()
    return set(_TOKEN.findall(stem))


def _group_word(token: str) -> bool:
    return token in GROUP_WORDS or _NUMBERED.match(token) is not None


def _group(token: str) -> str:
    """The group a group word names: ``males`` and ``men`` name ``male``; ``fold01`` names ``fold1``."""
    numbered = _NUMBERED.match(token)
    if numbered is not None:
        return f"{token[: numbered.start(1)]}{int(numbered.group(1))}"
    return _SAME_GROUP.get(token, token)
