"""Finding a dataset's identifiers in disguise: spaced, squeezed, reversed, ROT13, look-alike
letters, hex, base64/32/85 or text escapes.

`IdentifierMatcher` finds "Jane Doe" and "doe_jane.png". A job that wants a name out prints
it as "J a n e  D o e", "JANEDOE", "eoD enaJ", "4a616e65" or "SmFuZQ==" instead. Each
function here rewrites lines into a form in which the plain matcher (or a substring search
for long identifiers) sees through one disguise, keeping one output line per input line so
hits map back to line numbers.
"""

from __future__ import annotations

import base64
import codecs
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from itertools import accumulate
from typing import TYPE_CHECKING

from egress_review import number_forms
from egress_review.encoded import decoded_fragments
from egress_review.folding import fold, needs_folding
from egress_review.mixed_words import ONE_MIXED_WORD as _ONE_MIXED
from egress_review.mixed_words import digits_of_mixed, has_mixed, letters_of_mixed
from egress_review.number_bytes import continues, number_text
from egress_review.spelled import spelled
from egress_review.terminal import needs_rendering, rendered

if TYPE_CHECKING:  # importing the checks package here would import this module back through it
    from egress_review.checks.identifiers import IdentifierMatcher

# A run of single characters separated by exactly one non-alphanumeric character:
# "J a n e", "J.a.n.e", "C-I-T-I-Z-E-N". Longer gaps separate words.
_SPACED = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z](?:[^0-9A-Za-z\n][0-9A-Za-z](?![0-9A-Za-z]))+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
# Identifiers at least this long (letters and digits only) are also searched as substrings of
# squeezed lines: long enough that a chance match in ordinary text is unlikely.
MIN_SQUEEZED_CHARS = 6
# Up to this many anchor k-grams, `SqueezedIndex.lines_with` looks for each in the text;
# beyond it, it collects the text's k-grams once and intersects (break-even measured near
# 350 anchors on a 1 MB text).
FEW_ANCHORS = 256
# A running log's last lines wait when they end with this much of an identifier's start: one
# character, so an identifier printed a character or two a line shows nothing of itself to a
# follower before the line that completes it is judged (redteam14; three let two through).
MIN_WAIT_PREFIX_CHARS = 1
# An identifier of digits only (a date, an MRN) up to this long also has its hex and base64
# forms looked for; longer ones are UIDs, one per image, too many to encode (their digits are
# looked for run on across lines, `SqueezedIndex.numeric`).
MAX_NUMERIC_CHARS = 16
# Across lines the numeric search reads a line of at most this many digits as its digits alone
# (`digit_lines`).
MAX_DIGITS_A_LINE = 4
# ... skipping at most this many lines in a row without digits between them.
MAX_WORD_LINES_BETWEEN = 3
_NOT_DIGIT = re.compile(r"[^0-9]+")


# A word of three or more characters with both letters and digits, and the digits that
# stand for letters in leetspeak.
_MIXED_WORD = re.compile(r"\b(?=[0-9]*[A-Za-z])(?=[A-Za-z]*[0-9])[0-9A-Za-z]{3,}\b")
_LEET = str.maketrans("013457", "oieast")


def _leet_words(line: str) -> bool:
    """Whether ``line`` has a mixed word that reads as letters only ("J4N3"; not "1e" of
    "1e-4", nor "epoch12" whose 2 stands for no letter): only such lines are re-read."""
    return any(m.group(0).translate(_LEET).isalpha() for m in _MIXED_WORD.finditer(line))


def _unleet(line: str) -> str:
    """``line`` with the digits of its mixed words read as letters: "J4N3" is "JaNe"."""
    return _MIXED_WORD.sub(lambda m: m.group(0).translate(_LEET), line)


# Short groups of digits with any separators between them ("19 62 03 15", "1  9  6  2",
# "0048-213"): read joined, the whole-token matcher sees the number they spell (redteam15).
_DIGIT_GROUPS = re.compile(
    r"(?<![0-9A-Za-z])[0-9]{1,4}(?:[^0-9A-Za-z\n]+[0-9]{1,4}(?![0-9]))+(?![0-9A-Za-z])"
)


def digits_joined(line: str) -> str:
    """``line`` with each run of short digit groups joined, when one spells a number as long as
    the shortest numeric identifier at least ("" otherwise, so only such lines are matched
    again: an ordinary log's "loss 0.5000" gives none)."""
    found = False

    def join(match: re.Match[str]) -> str:
        nonlocal found
        digits = _NOT_DIGIT.sub("", match.group(0))
        found = found or len(digits) >= MIN_SQUEEZED_CHARS
        return digits

    joined = _DIGIT_GROUPS.sub(join, line)
    return joined if found else ""


def despaced(line: str) -> str:
    return _SPACED.sub(lambda m: re.sub(r"[^0-9A-Za-z]", "", m.group(0)), line)


def squeeze(text: str) -> str:
    """``text`` as letters and digits only, lower case, folded first (`fold`: look-alikes,
    other scripts' digits, invisible characters and terminal escapes), so a piece of an
    identifier cut across lines reads the same in any of those spellings (redteam15)."""
    return _NOT_ALNUM.sub("", fold(text).lower())


def _letter_richest(form: str, k: int) -> int:
    """Offset of the k-gram of ``form`` with the most letters (the first such)."""
    counts = [sum(c.isalpha() for c in form[j : j + k]) for j in range(len(form) - k + 1)]
    return counts.index(max(counts))


def _given_first(identifier: str) -> tuple[str, ...]:
    """A DICOM person name ``DOE^JANE`` also squeezed given name first: "janedoe" (redteam9)."""
    parts = [squeeze(p) for p in identifier.split("^") if squeeze(p)]
    return ("".join(reversed(parts)),) if len(parts) >= 2 else ()


def _base64_cores(data: bytes) -> set[str]:
    """The base64 characters of ``data`` that do not depend on what stands around it, at each
    of its three alignments in a longer encoded run (``data`` after 0, 1 or 2 other bytes)."""
    cores = set()
    for skip in range(3):
        encoded = base64.b64encode(bytes(skip) + data).decode()
        cores.add(encoded[-(-skip * 8 // 6) : (skip + len(data)) * 8 // 6])
    return cores


def encoded_forms(identifier: str) -> set[str]:
    """``identifier`` hex- and base64-encoded (any alignment), squeezed as log text is: a
    job printing an identifier's encoding a few characters a line (redteam14) is found like
    the identifier itself run on across lines. Case and ``+/-_`` are lost in squeezing, which
    only widens the match (standard and URL-safe base64 alike)."""
    data = identifier.encode()
    return {squeeze(form) for form in (data.hex(), *_base64_cores(data))}


def _anchored(index: dict[str, set[tuple[str, int]]], form: str, at: int | None = None) -> None:
    """File ``form`` under one of its k-grams: the one richest in letters unless ``at`` says."""
    if at is None:
        at = _letter_richest(form, MIN_SQUEEZED_CHARS)
    index.setdefault(form[at : at + MIN_SQUEEZED_CHARS], set()).add((form, at))


def digit_lines(squeezed_lines: list[str]) -> list[str]:
    """Squeezed lines as the numeric search reads them across lines (redteam15): a line of at
    most `MAX_DIGITS_A_LINE` digits gives only its digits, so a date printed a digit a line
    with "step" (or any words) between is still one run ("1" / "step" / "9" / ...), and up to
    `MAX_WORD_LINES_BETWEEN` lines in a row without digits are left out (more break the run,
    so a running log whose last number could start an identifier waits a few lines, not until
    the next number); a line with more digits (timestamps, metrics) stays as it is, its
    letters breaking runs, so an ordinary log's numbers are not strung together."""
    shown = []
    wordy = 0
    for line in squeezed_lines:
        digits = _NOT_DIGIT.sub("", line)
        wordy = 0 if digits else wordy + 1
        if not digits:
            shown.append("" if wordy <= MAX_WORD_LINES_BETWEEN else "-")
        else:
            shown.append(digits if len(digits) <= MAX_DIGITS_A_LINE else line)
    return shown


def _reversed_each(lines: list[str]) -> list[str]:
    """Each line reversed, in the same order: read with the forms (kept with their reversals)
    this finds an identifier whose pieces were printed last piece first ("15" / "03" / "62" /
    "19"), and its line numbers still count from the first line."""
    return [line[::-1] for line in lines]


class SqueezedIndex:
    """Long identifiers as letters and digits only, and reversed, found as substrings of
    squeezed text (catches "JANEDOE", "jane.doe.1970" run together, and "EODENAJ").

    The text's distinct k-grams are collected once (C-speed set building) and intersected
    with one anchor k-gram per identifier form (the one richest in letters: runs of digits
    are everywhere in logs); only those candidates are then searched.

    Three indexes: ``by_anchor``, the identifiers squeezed, reversed and given name first
    (also searched in ROT13); ``encoded``, their hex and base64 encodings; ``numeric``, the
    all-digit identifiers (dates, MRNs, and UIDs squeezed: redteam15 found a UID printed
    a few digits a line passed) and their reversals, searched only where they run across
    lines (in one line they are the whole-token matcher's: as substrings they would collide
    with every run of digits), in `digit_lines`. Digit forms are anchored on their own end
    (a UID's root, "1.2.840.", is shared by every UID of a site; its end is not).

    Across lines each index is searched twice: in the lines as written and with each line
    reversed (pieces printed last first), so a researcher gains nothing by ordering them."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        k = MIN_SQUEEZED_CHARS
        self.by_anchor: dict[str, set[tuple[str, int]]] = {}
        self.encoded: dict[str, set[tuple[str, int]]] = {}
        self.numeric: dict[str, set[tuple[str, int]]] = {}
        self._forms: list[str] | None = None  # built on first use (`open_wrap_start`)
        self._numeric_forms: list[str] | None = None
        self._reversible_forms: list[str] = []
        self._rot13: dict[str, set[tuple[str, int]]] | None = None
        self._longest = 0
        self._numeric_longest = 0
        for ident in identifiers:
            norm = squeeze(ident)
            if len(norm) < k:
                continue
            if norm.isdigit():
                _anchored(self.numeric, norm, len(norm) - k)
                if len(norm) > MAX_NUMERIC_CHARS:
                    # A UID: neither its encodings nor its reversal are looked for (a reversed
                    # UID starts with its own random digits: a running log's short numbers
                    # would begin one of 100,000 of them, and wait, all the time).
                    continue
                _anchored(self.numeric, norm[::-1], 0)
            else:
                for form in (norm, norm[::-1], *_given_first(ident)):
                    _anchored(self.by_anchor, form)
            for form in encoded_forms(ident):
                _anchored(self.encoded, form)

    def __bool__(self) -> bool:
        return bool(self.by_anchor or self.encoded or self.numeric)

    def lines_with(self, squeezed_lines: list[str]) -> set[int]:
        """0-based numbers of the lines holding an identifier (forwards or reversed)."""
        k = MIN_SQUEEZED_CHARS
        text = "\n".join(squeezed_lines)
        if len(self.by_anchor) + len(self.encoded) <= FEW_ANCHORS:
            # Few identifiers: a C substring search per anchor beats building every k-gram of
            # the text (a 1 MB table: 8 x 0.19 s of set building).
            present: set[str] | None = None
        else:
            present = {text[i : i + k] for i in range(len(text) - k + 1)}
        hits: set[int] = set()
        starts = list(accumulate((len(line) + 1 for line in squeezed_lines), initial=0))
        for index in (self.by_anchor, self.encoded):
            found = [a for a in index if a in text] if present is None else present & index.keys()
            for anchor in found:
                forms = index[anchor]
                pos = text.find(anchor)
                while pos >= 0:
                    for form, at in forms:
                        if pos >= at and text.startswith(form, pos - at):
                            hits.add(bisect_right(starts, pos - at) - 1)
                    pos = text.find(anchor, pos + 1)
        return hits

    def wrapped_lines(self, squeezed_lines: list[str]) -> set[int]:
        """0-based numbers of every line an identifier (forwards, reversed, or either in ROT13)
        runs across when the lines are joined with nothing between them: "PAT-123" at one
        line's end and "456" at the next's start (redteam13: the file check found these, the
        log screen did not); also with each line reversed, and the numeric identifiers in
        `digit_lines` (redteam15)."""
        hits: set[int] = set()
        digits = digit_lines(squeezed_lines)
        hits |= _wrapped(squeezed_lines, self._indexes())
        hits |= _wrapped(_reversed_each(squeezed_lines), self._reversible())
        for lines in (digits, _reversed_each(digits)):
            hits |= _wrapped(lines, (self.numeric,))
        return hits

    def wrapped_mixed_lines(self, lines: list[str], skip: frozenset[int] = frozenset()) -> set[int]:
        """0-based numbers of every line a name with digits between its letters runs across
        ("C1o2m3p4r5" / "e6s7s8e9d0S1a2m3p4l5e6s7", round 19: each line was read for such a
        name alone): the lines with such words (`mixed_words.has_mixed`, or one mixed word
        alone: "C1") read as their letters alone, the others as they are, joined as
        `wrapped_lines` joins them, forwards and each reversed. Only when some line has such
        words; ``skip``: lines withheld anyway (encoded data, overlong), which break a run."""
        changed = [
            i not in skip and (has_mixed(line) or bool(_ONE_MIXED.fullmatch(line)))
            for i, line in enumerate(lines)
        ]
        if not any(changed) or not self.by_anchor:
            return set()
        letters = [
            "-" if i in skip else squeeze(letters_of_mixed(fold(line)) if mixed else line)
            for i, (line, mixed) in enumerate(zip(lines, changed, strict=True))
        ]
        hits = _wrapped(letters, self._reversible())
        return hits | _wrapped(_reversed_each(letters), self._reversible())

    def run_on_lines(self, pieces: list[str]) -> set[int]:
        """0-based numbers of the pieces an identifier's form runs across when ``pieces`` (one
        a line, already in squeezed form) are joined with nothing between them, read as they
        are: a non-alphanumeric piece breaks a run (`egress_review.columns`)."""
        return _wrapped(pieces, self._indexes())

    def _indexes(self) -> tuple[dict[str, set[tuple[str, int]]], ...]:
        return (*self._reversible(), self.encoded)

    def _reversible(self) -> tuple[dict[str, set[tuple[str, int]]], ...]:
        """The indexes that hold each form's reversal too, the ones `_reversed_each` lines
        are read with (the encodings' reversals are not kept: a residual)."""
        return (self.by_anchor, self._rot13_index())

    def _rot13_index(self) -> dict[str, set[tuple[str, int]]]:
        """The forms in ROT13, by their anchors in ROT13 (built on first use)."""
        if self._rot13 is None:
            self._rot13 = {}
            for anchor, forms in self.by_anchor.items():
                rotated = {(codecs.encode(form, "rot13"), at) for form, at in forms}
                self._rot13.setdefault(codecs.encode(anchor, "rot13"), set()).update(rotated)
        return self._rot13

    def open_wrap_start(self, squeezed_lines: list[str], texts: list[str] | None = None) -> int | None:
        """0-based line from which a running job's log waits because the joined lines end
        with the start of an identifier (one letter or digit at least, forwards, reversed, or
        either in ROT13, or encoded) that the next line could finish; None when they do not.
        Read as `wrapped_lines` reads: also with each line reversed (the forms hold their
        reversals, so a piece printed last first waits as well), and the numeric identifiers
        in `digit_lines`.

        Only a bare piece waits beyond the last line (round 19, `_held_from`): a line that
        is nothing but the identifier's start (all of it inside the start: "C", "1.2.",
        "4a61"), so a piece printed alone a line is never shown before the line completing
        it is judged. A line that holds more ("loss 0.9000" ending in "00", the start of an
        MRN; "epoch 1" followed by word lines) waits while it is the last line only: round
        14's rule held it, and every line after it, for as long as the start stayed open,
        so a follower of an ordinary training log, pip's output or a traceback waited up to
        six lines. ``texts``: the lines as written, for `_numeric_holds`."""
        self._wait_forms()
        digits = digit_lines(squeezed_lines)
        numeric_holds = _numeric_holds(squeezed_lines, texts)
        found = [
            _open_start(lines, forms, longest, holds)
            for lines, forms, longest, holds in (
                (squeezed_lines, self._forms, self._longest, None),
                (_reversed_each(squeezed_lines), self._reversible_forms, self._longest, None),
                (digits, self._numeric_forms, self._numeric_longest, numeric_holds),
                (_reversed_each(digits), self._numeric_forms, self._numeric_longest, numeric_holds),
            )
        ]
        starts = [at for at in found if at is not None]
        return min(starts) if starts else None

    def _wait_forms(self) -> list[str]:
        if self._forms is None or self._numeric_forms is None:
            found = {form for index in self._indexes() for fs in index.values() for form, _ in fs}
            reversible = {form for index in self._reversible() for fs in index.values() for form, _ in fs}
            numeric = {form for fs in self.numeric.values() for form, _ in fs}
            self._forms = sorted(found)
            self._reversible_forms = sorted(reversible)
            self._numeric_forms = sorted(numeric)
            self._longest = max((len(f) - 1 for f in self._forms), default=0)
            self._numeric_longest = max((len(f) - 1 for f in self._numeric_forms), default=0)
        return self._forms

    def wrap_tail(self, lines: list[str]) -> int:
        """Index of the first of the last lines that `open_wrap_start` must read: back until
        their squeezed text is as long as the longest identifier start, and their digits (in
        `digit_lines`) as many as the longest numeric one's; counted in characters, not
        lines, so blank, punctuation or word lines between the pieces push none of them out
        of sight."""
        self._wait_forms()
        total = digits = 0
        for i in range(len(lines) - 1, -1, -1):
            squeezed = squeeze(lines[i])
            total += len(squeezed)
            digits += len(digit_lines([squeezed])[0])
            if total >= self._longest and digits >= self._numeric_longest:
                return i
        return 0


def _wrapped(lines: list[str], indexes: Iterable[dict[str, set[tuple[str, int]]]]) -> set[int]:
    """0-based numbers of every line a form of ``indexes`` runs across when ``lines`` are
    joined with nothing between them. One pass: the text's k-grams are collected once."""
    k = MIN_SQUEEZED_CHARS
    text = "".join(lines)
    grams = {text[i : i + k] for i in range(len(text) - k + 1)}
    starts = list(accumulate((len(line) for line in lines), initial=0))
    hits: set[int] = set()
    for index in indexes:
        for anchor in grams & index.keys():
            forms = index[anchor]
            pos = text.find(anchor)
            while pos >= 0:
                for form, at in forms:
                    begin = pos - at
                    if begin >= 0 and text.startswith(form, begin):
                        first = bisect_right(starts, begin) - 1
                        last = bisect_right(starts, begin + len(form) - 1) - 1
                        if last > first:
                            hits.update(range(first, last + 1))
                pos = text.find(anchor, pos + 1)
    return hits


def _open_start(
    lines: list[str], forms: list[str] | None, longest: int, holds: list[int] | None = None
) -> int | None:
    """0-based line from which ``lines`` wait when joined they end with a proper prefix of
    one of ``forms`` (`_held_from`), else None."""
    if not forms:
        return None
    text = "".join(lines)
    starts = list(accumulate((len(line) for line in lines), initial=0))
    for size in range(min(len(text), longest), MIN_WAIT_PREFIX_CHARS - 1, -1):
        if _begins_form(forms, text[-size:]):
            begin = len(text) - size
            first = bisect_right(starts, begin) - 1  # (empty lines at ``begin`` skipped)
            return _held_from(lines, first, begin - starts[first], holds)
    return None


# An identifier's base64 begins up to this many characters into its first line (the bytes
# before it share its first characters: "eENvbX" for "x" then the name), so a piece with as
# many characters before it is still a bare piece (`_held_from`).
MAX_LEAD_CHARS = 3
# How a line may wait in the numeric reading (`_numeric_holds`).
HOLDS = 0  # digits alone: a bare piece, also across word lines
HOLDS_IN_A_RUN = 1  # words and numbers: a piece while every line after it gives digits too
NEVER_HOLDS = 2  # digits run into letters ("UNet3D", "run0"): waits as the last line only
# A digit touching a letter, any script.
_GLUED = re.compile(r"[^\W\d_]\d|\d[^\W\d_]")


def _numeric_holds(squeezed_lines: list[str], texts: list[str] | None) -> list[int]:
    """How each line may wait in the numeric reading: a line of digits alone is a bare piece
    ("1" / "step" / "9": round 15's date a digit a line with words between); a line of words
    and numbers ("item 1 ready") only within a run of lines that all give digits, so "epoch
    1" followed by word lines is shown; a line whose digits are glued to letters (class
    names, paths: "UNet3D", "run0") never waits beyond the last line."""
    holds = []
    for i, line in enumerate(squeezed_lines):
        if line.isdigit():
            holds.append(HOLDS)
        elif texts is not None and _GLUED.search(fold(texts[i])):
            holds.append(NEVER_HOLDS)
        else:
            holds.append(HOLDS_IN_A_RUN)
    return holds


def _held_from(lines: list[str], first: int, lead: int, holds: list[int] | None) -> int:
    """The first line that waits when an identifier's start open at the end of ``lines``
    begins ``lead`` characters into line ``first``: the first bare piece, a line lying all
    inside the start and giving some of it (and allowed to by ``holds``, `_numeric_holds`;
    outside the numeric reading up to `MAX_LEAD_CHARS` may come before the start); a line
    that gives nothing (a blank line, a word line in the numeric reading) waits only after a
    piece that waits. The last line always waits: the next line could finish the
    identifier."""
    last = len(lines) - 1
    whole = lead == 0 or (holds is None and lead <= MAX_LEAD_CHARS)
    for k in range(first if whole else first + 1, last):
        if not lines[k]:
            continue
        hold = HOLDS if holds is None else holds[k]
        if hold == HOLDS or (hold == HOLDS_IN_A_RUN and all(lines[k + 1 :])):
            return k
    return last


def _begins_form(forms: list[str], start: str) -> bool:
    """Whether ``start`` is a proper prefix of one of the sorted ``forms``: the forms it
    begins follow it in sorted order, so one bisection answers (storing every prefix of every
    form, as before round 14b, took hundreds of MB for 10,000 identifiers)."""
    at = bisect_left(forms, start)
    if at < len(forms) and forms[at] == start:
        at += 1
    return at < len(forms) and forms[at].startswith(start)


def disguised_lines(
    lines: list[str],
    matcher: IdentifierMatcher,
    squeezed_index: SqueezedIndex,
    withheld_anyway: frozenset[int] = frozenset(),
) -> set[int]:
    """0-based numbers of the lines that carry an identifier in any handled disguise.

    ``withheld_anyway``: lines the caller withholds whatever they name (encoded data), left
    out of the readings added in round 16 (a base64 line is all mixed words: re-reading
    every one took a third more time on the benchmark's adversarial log)."""
    hits: set[int] = set()
    if not matcher and not squeezed_index:
        return hits

    def by_matcher(variant: list[str], using: IdentifierMatcher = matcher) -> None:
        if using:
            hits.update(h.line - 1 for h in using.find("\n".join(variant), limit=100_000))

    # Reversed and ROT13 readings with the identifiers long enough to be no ordinary word
    # turned (`IdentifierMatcher.turned`, round 21: "dim" is "mid" reversed).
    turned = matcher.turned if matcher else matcher

    # Look-alike letters, accents, escapes and invisible characters (`egress_review.folding`):
    # the folded text is matched as it is, spaced out and squeezed.
    if any(needs_folding(line) for line in lines):
        folded = [fold(line) for line in lines]
        by_matcher(folded)
        by_matcher([despaced(line) for line in folded])
        if squeezed_index:
            hits |= squeezed_index.lines_with([squeeze(line) for line in folded])
    # Digits for letters inside a word ("D03 J4N3", redteam9); lines without such a word are
    # left empty, so the matcher's line numbers still count from the first line.
    leet = [_unleet(line) if _leet_words(line) else "" for line in lines]
    if any(leet):
        by_matcher(leet)
        if squeezed_index:
            hits |= squeezed_index.lines_with([squeeze(line) for line in leet])
    spaced = [despaced(line) for line in lines]
    by_matcher(spaced)
    by_matcher([codecs.encode(line, "rot_13") for line in spaced], turned)
    by_matcher([line[::-1] for line in spaced], turned)
    # Reversed as written too: despacing joins a UID's one-digit parts ("1.3.6.1"), so its
    # reversal was found in neither form (redteam15).
    # (only lines despacing changed: the others' reversal was just read)
    changed = [line[::-1] if line != joined else "" for line, joined in zip(lines, spaced, strict=True)]
    if any(changed):
        by_matcher(changed, turned)
    # Letters between an identifier's digits, digits between a name's letters (round 16):
    # each word of both read as its digits alone and as its letters alone.
    mixed = [i not in withheld_anyway and has_mixed(line) for i, line in enumerate(lines)]
    if any(mixed):
        for read in (digits_of_mixed, letters_of_mixed):
            variant = [read(fold(line)) if m else "" for line, m in zip(lines, mixed, strict=True)]
            by_matcher(variant)
            if squeezed_index:
                hits |= squeezed_index.lines_with([squeeze(line) for line in variant])
    # Numbers in another notation: "1.9620315e7", "19.620315", "0x12b61db", "0o112660733"
    # (round 20, `egress_review.number_forms`).
    if matcher:
        hits |= number_forms.lines_with(lines, matcher.digit_singles, matcher.min_numeric)
    grouped = [digits_joined(fold(line)) for line in lines]
    if any(grouped):
        by_matcher(grouped)
        by_matcher([line[::-1] for line in grouped], turned)
    decoded = [" ".join(decoded_fragments(line)).replace("\n", " ") for line in lines]
    by_matcher(decoded)
    by_matcher([line[::-1] for line in decoded], turned)
    if squeezed_index:
        hits |= squeezed_index.lines_with([squeeze(line) for line in lines])
        hits |= squeezed_index.lines_with([squeeze(line) for line in decoded])
    # Round 22: the line as a terminal draws it (backspaces, cursor moves), its numbers as
    # character codes and as the bytes they hold, its spelled words (NATO, Morse, digit
    # words). Lines withheld anyway are not read again.
    for read in (_drawn, number_text, spelled):
        variant = ["" if i in withheld_anyway else read(line) for i, line in enumerate(lines)]
        if any(variant):
            by_matcher(variant)
            if squeezed_index:
                hits |= squeezed_index.lines_with([squeeze(line) for line in variant])
    # Character codes wrapped onto the next line (numpy's repr): each line with the next.
    if matcher:
        pairs = [
            number_text(line + " " + lines[i + 1])
            if not withheld_anyway & {i, i + 1} and continues(line, lines[i + 1])
            else ""
            for i, line in enumerate(lines[:-1])
        ]
        if any(pairs):
            for hit in matcher.find("\n".join(pairs), limit=100_000):
                hits.update((hit.line - 1, hit.line))
    return hits


def _drawn(line: str) -> str:
    """``line`` as a terminal shows it, folded (`egress_review.terminal`), when it moves the
    cursor; "" when drawing changes nothing."""
    return fold(rendered(line)) if needs_rendering(line) else ""
