"""Screening a job's log before a researcher sees it.

A job can print whatever it read, so its log is an output channel like any file in /output,
only live. Researchers therefore see it through the same knowledge the airlock has, line by
line but judged in context, always from the start of the log (so where a reader starts
reading cannot change what a line is judged to be):

* lines naming an identifier from the dataset's DICOM headers, also when it is spaced out,
  run together, reversed, or printed as hex, ``\\xNN`` escapes or base64;
* lines that carry encoded data: one long base64/hex run, or a stretch of lines whose
  encoded-looking payload adds up (base64 wrapped at 76 columns, hex dumps, spaced groups);
  what ordinary tools print is not payload (round 17, `egress_review.encoded`): a row of
  numbers counting in steps (``0 3 6 9 12``), one content hash a line beside words (git
  commit ids, pip's ``sha256=`` and wheel-cache paths, docker layer ids, ``sha256sum``),
  CamelCase names (``RuntimeError``, ``'ResNet3DBlockV2'``), words and numbers; hex alone
  on a line, two hashes a line, hex dumps and runs of 96 characters still count;
* overlong lines;
* lines that present themselves as progress reports (``tre-progress:``, ``tre-series:``) but
  are not exactly one of the fixed forms of `tre.kernels.progress`, or whose counts contradict
  the earlier ones (another cohort size, counts going down, a series reported twice);

are replaced by a ``[tre] withheld ...`` notice, and only the first ``limit_bytes`` of the log
are considered at all (the per-job budget; the per-project daily budget is kept by the
caller, `egress_review.logbudget`). Staff (admin, auditor) read the raw log.

An all-digit identifier printed a piece a line among other numbers, across any number of
word lines, reversed, or with letters between its digits is found by `DigitChains`; a name
with digits between its letters cut across lines by `SqueezedIndex.wrapped_mixed_lines`; a
base64 payload's short head or tail on a line of its own is withheld with the payload.

What a follower waits for (round 19): every line of a running log but the last is shown,
except a bare piece of an identifier's start (a line lying all inside it: "C", "1.2.",
"4a61", a line of digits alone with word lines after it) while the lines after it could
still complete the identifier (`SqueezedIndex.open_wrap_start`). An encoded-looking line
whose context is not all written waits only while it is the last (round 20; up to 32 lines
before) and is judged with twice the context behind it (`_judged_for_follower`). A line
that ends with an identifier's start among other text ("loss 0.9000", "epoch 1" then word
lines), a labelled part ("MRN part 1: 0048") and a digit chain's piece wait only while they
are the last line (rounds 14-15 held them, and the lines after them, up to six lines of
ordinary logs): the line completing an identifier is withheld as it is judged, its earlier
pieces from then on, so a follower has read those before the last one or two (SECURITY.md
says what that gives away).

Name parts inside a fixed phrase a tool prints ("Traceback (most recent call last):" and a
patient named Last) are no hit (`egress_review.checks.standard_phrases`); class names with
acronyms and versions ("'ConvNeXtV2Blk3D'") are no base64 (`egress_review.encoded`).

Round 20: an all-digit identifier's pieces at different places among their lines' numbers
(three digits a piece or more), separated by lines of other numbers (on lines of one shape),
in a progress bar's ``\r`` redraws of one line (`_chained`), and the number itself in
scientific notation, with its decimal point moved, in hex or in octal
(`egress_review.number_forms`) are withheld.

Round 21: the number's value with its leading zeros dropped (``48213`` for MRN ``0048213``,
also in hex or octal), in scientific notation rounded as ``%e`` prints it, and a date split
over a list's or a tuple's numbers (``[1962, 315]``, ``datetime.date(1962, 3, 15)``) are
withheld (`egress_review.number_forms`); false alarms cut: a short name part reversed or in
ROT13 is an ordinary word ("dim" is "Mid" reversed: `IdentifierMatcher.turned` holds the
identifiers of five letters and digits or more), and a lettered ID's digit run is an
identifier alone only with five digits besides its leading zeros ("PAT0000005" made
``lr 0.000005`` a hit).

Round 22: an identifier as a terminal draws it but the folded text does not spell it
(backspaces over decoys, letters placed by column out of order: `egress_review.terminal`);
as character codes in hex, octal or ``chr()`` calls, as the bytes of big integers, of 32-
or 64-bit words or of 64-bit floats, in a bytes literal between NULs, in a numpy repr
wrapped onto a second line (`egress_review.number_bytes`); in base58
(`egress_review.encoded`); spelled in the NATO alphabet, Morse code or digit words of seven
languages (`egress_review.spelled`); and a character a line down a column of lines of one
shape, or of a line's ``\r`` redraws (`egress_review.columns`, `_columns`) are withheld.

This narrows the channel; it does not close it (a job can still print small facts one
line at a time, within the budgets). Known residuals (round 22): a code the job keys itself
(a Caesar shift but 13, atbash, XOR, character codes shifted by a constant, the letters in an
order of its choosing, "CmrseSmls" / "opesdape"), a letter a line at changing places or on
lines of changing shapes, the number of lines or bytes before the per-job cut (up to ~18
bits a job, as counting lines is); from round 21: an identifier's pieces of
one or two digits at different places among their lines' other numbers (46 of 6,054 benign
lines withheld when two-digit pieces were taken), or past a busy line's first 256 or behind
64 chains begun on it; pieces separated by lines holding other numbers and printed on lines
of different shapes (a chain must use every other line with digits between its pieces, else
any log's numbers spell a date); an identifier as the sum or difference of two numbers (75
of 7,014 benign lines withheld with 2,000 random MRNs), an MRN split over a list's numbers,
a value of fewer than five significant digits (``123`` of ``PAT0000123``), a name part of
four letters or fewer reversed; to a follower, a payload's head (shown before the payload
arrives), a labelled part or a first piece followed by another line, an identifier's
pieces before its last one or two, and a column's characters before its last (round 22:
its lines are ordinary until the column spells the identifier).
Progress lines that pass are shown as re-printed from their parsed counts, so nothing but
those numbers comes from the job. `status_only` in the dataset's policy closes it at the
price of no live log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate

from egress_review.checks.identifiers import IdentifierMatcher
from egress_review.columns import column_lines
from egress_review.digit_chains import ChainResult, DigitChains
from egress_review.disguised import MAX_NUMERIC_CHARS, SqueezedIndex, disguised_lines, squeeze
from egress_review.encoded import longest_run, payload_chars
from egress_review.split_parts import SplitIndex
from tre.kernels import progress
from tre.policy import Policy

_ORDER = {"full": 0, "screened": 1, "status_only": 2}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Encoded payload is added up over this many lines either side of a line: a file cut into
# lines, or interleaved with ordinary lines, is still judged as one run.
CONTEXT_LINES = 32

STATUS_ONLY_NOTICE = (
    b"[tre] this dataset's policy withholds job logs from researchers; "
    b"the job's state and reason are shown instead\n"
)


def _escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


PROGRESS_OUTSIDE_VOCABULARY = "[tre] withheld a progress line outside the fixed vocabulary"
PROGRESS_INCONSISTENT = "[tre] withheld a progress line that contradicts the earlier ones"


def _progress_lines(texts: list[str], reasons: list[str | None]) -> dict[int, str]:
    """Judge the lines that claim to be progress reports, in log order: withhold (in
    ``reasons``) those outside the vocabulary or contradicting earlier counts; return the
    accepted ones re-printed from their parsed counts."""
    tracker = progress.ProgressTracker()
    canonical: dict[int, str] = {}
    for i, text in enumerate(texts):
        if not progress.claims_vocabulary(text):
            continue
        item = progress.parse(text)
        if item is None:
            reasons[i] = reasons[i] or PROGRESS_OUTSIDE_VOCABULARY
        elif not tracker.accept(item):
            reasons[i] = reasons[i] or PROGRESS_INCONSISTENT
        elif reasons[i] is None:
            canonical[i] = item.line()
    return canonical


@dataclass(frozen=True)
class ScreenedLine:
    """One line of the raw log (bytes ``start`` to ``end``, its newline included) as a
    researcher may see it."""

    start: int
    end: int
    text: str
    withheld: bool


@dataclass
class Screening:
    lines: list[ScreenedLine] = field(default_factory=list)
    # Every line before this raw offset is judged; later ones wait for more of the log.
    decided_to: int = 0
    # The per-job limit stopped the screening before the end of the log.
    cut: bool = False


# A known value shorter than this is not blanked: job ids and hashes are 32 and 64 characters,
# and blanking short strings would let a job hide encoded data between them.
MIN_KNOWN_CHARS = 32


def known_values(
    job_id: str, input_job_ids: Iterable[str], image: str, code_hash: str | None
) -> frozenset[str]:
    """What the platform gave a job that its researcher already knows: ids and hashes only."""
    digest = image.rpartition("@sha256:")[2] if "@sha256:" in image else ""
    values = {job_id, *input_job_ids, digest, code_hash or ""}
    return frozenset(v for v in values if len(v) >= MIN_KNOWN_CHARS)


def _without_known(texts: list[str], known: Iterable[str]) -> list[str]:
    """``texts`` with every occurrence of a known value replaced by a space, longest first;
    matched case-insensitively, as hex is."""
    values = sorted({v.lower() for v in known if len(v) >= MIN_KNOWN_CHARS}, key=len, reverse=True)
    if not values:
        return texts
    pattern = re.compile("|".join(re.escape(v) for v in values), re.IGNORECASE)
    return [pattern.sub(" ", t) for t in texts]


ENCODED_RUN = "[tre] withheld a line holding an encoded run"
ENCODED_CONTEXT = "[tre] withheld a line of encoded-looking data (judged with its neighbours)"
ENCODED_TAIL = "[tre] withheld a line continuing encoded data"  # (its tail or its head)
# A short line of the base64 (or hex) alphabet alone, "=" padding included: the tail of a
# payload wrapped at some width (round 16: "Q" or "==" on its own line was shown).
_TAIL = re.compile(r"[A-Za-z0-9+/_-]{0,15}={0,3}")


def _withhold_tails(texts: list[str], reasons: list[str | None], encoded: frozenset[int]) -> None:
    """Withhold the short line of the encoding's alphabet alone next to a line withheld as
    encoded data (blank lines between skipped), the one after it and the one before it: too
    short to be judged encoded alone, it is still the payload's last characters, or its first
    (round 19: a lone first character on the line before the payload was shown). One line on
    each side only (a word or two printed after it, "done" / "ok", are not all tails), and
    judged only next to an encoded line, so ordinary logs are unaffected. A tail never waits:
    the payload's lines are withheld before it is written. A head is shown to a follower
    before the payload arrives (one line of at most 15 characters; SECURITY.md). ``encoded``:
    the lines withheld as encoded data."""
    for order in (range(len(texts)), range(len(texts) - 1, -1, -1)):
        next_to_payload = False
        for i in order:
            if i in encoded:
                next_to_payload = True
            elif not texts[i].strip():
                continue
            else:
                if next_to_payload and reasons[i] is None and _TAIL.fullmatch(texts[i].strip()):
                    reasons[i] = ENCODED_TAIL
                next_to_payload = False


def _judged_for_follower(reasons: list[str | None], payloads: list[int], min_chars: int) -> None:
    """Withhold, in a running log, an encoded-looking line whose context is not all written
    when the payload of the lines written around it, `CONTEXT_LINES` after it and twice as
    many before, adds up to ``min_chars``.

    The ended log judges a line with the 32 lines on each side; a follower reads a line once
    the next is written (round 20; before, such a line waited for its 32 lines of context).
    Judged with only the lines before it and the next, a follower read about twice the payload
    the ended log lets through (one 44-character run every 17 lines: 12 in 200 lines, where
    the ended log shows at most 7, one every 33). With twice the window behind it, a follower
    reads no more than the ended log shows and the payload of one window (under
    ``min_chars``) besides; the ended log may show such a line that a follower saw withheld
    (tests/security/test_log_residuals_round20.py)."""
    sums = list(accumulate(payloads, initial=0))
    last = len(payloads) - 1
    for i in range(max(0, last - CONTEXT_LINES), last):
        if payloads[i] and reasons[i] is None:
            if _context_payload(sums, i, before=2 * CONTEXT_LINES) >= min_chars:
                reasons[i] = ENCODED_CONTEXT


def _context_payload(sums: list[int], i: int, before: int = CONTEXT_LINES) -> int:
    """The payload of line ``i`` and its context: ``before`` lines before it and
    `CONTEXT_LINES` after (``sums``: the running sums of the lines' payloads)."""
    lo = max(0, i - before)
    hi = min(len(sums) - 1, i + CONTEXT_LINES + 1)
    return sums[hi] - sums[lo]


@dataclass(frozen=True)
class LogScreen:
    matcher: IdentifierMatcher
    squeezed: SqueezedIndex
    visibility: str
    limit_bytes: int
    max_line_chars: int
    encoded_min_chars: int
    split: SplitIndex = field(default_factory=lambda: SplitIndex(()))
    chains: DigitChains = field(default_factory=lambda: DigitChains(()))

    @classmethod
    def for_policies(cls, policies: Iterable[Policy], identifiers: set[str]) -> LogScreen:
        """The strictest setting of every field over the job's datasets' policies."""
        pols = list(policies)
        if not pols:
            raise ValueError("a log screen needs at least one policy")
        jobs = [p.job for p in pols]
        matcher = IdentifierMatcher(identifiers, pols[0].text)
        kept = {i for i in identifiers if matcher.find(i, limit=1)}
        return cls(
            matcher=matcher,
            squeezed=SqueezedIndex(kept),
            visibility=max((j.log_visibility for j in jobs), key=_ORDER.__getitem__),
            limit_bytes=min(j.researcher_log_limit_kib for j in jobs) * 1024,
            max_line_chars=min(j.log_max_line_chars for j in jobs),
            encoded_min_chars=min(j.log_encoded_min_chars for j in jobs),
            split=SplitIndex(kept),
            chains=DigitChains(kept),
        )

    # -- judging --------------------------------------------------------------------------
    def screen_log(self, log: bytes, final: bool, known: Iterable[str] = ()) -> Screening:
        """Judge the log from its first byte. ``log`` may run past ``limit_bytes`` (the
        caller reads one byte more to know); ``final`` says the job has ended and this is all.
        Until then only whole lines are judged, and encoded-looking lines near the end wait
        until enough follows to judge their context.

        ``known``: values the platform itself gave the job and the researcher already holds
        (the job's id, its input jobs' ids, its image digest and code hash, `known_values`).
        They are hex, so they looked like encoded data: a job printing its own `/inputs/<id>`
        paths had those lines, and the sandbox's first line naming the image digest, withheld
        as "encoded-looking". They carry nothing the job chose, so they are left out of the
        encoded-data judgement (only of it: a line is still judged for everything else, and
        whatever else it holds still counts)."""
        out = Screening()
        window = log
        if len(log) > self.limit_bytes:
            window = log[: self.limit_bytes]
            cut = window.rfind(b"\n") + 1
            window = window[:cut] if cut else window
            out.cut = True
            final = True  # nothing beyond the limit will ever be shown
        elif not final:
            end = window.rfind(b"\n") + 1
            if end == 0 and len(window) > self.max_line_chars * 4:
                end = len(window)  # no line end in sight and already overlong: judge it now
            window = window[:end]
        if not window:
            return out
        raw_lines = window.split(b"\n")
        if raw_lines and raw_lines[-1] == b"":
            raw_lines.pop()
        texts = [r.decode("utf-8", "replace") for r in raw_lines]
        starts = list(accumulate((len(r) + 1 for r in raw_lines), initial=0))
        judged = _without_known(texts, known)
        payloads = self._payloads(judged)
        reasons, chained = self._reasons(texts, payloads, judged)
        if not final:
            _judged_for_follower(reasons, payloads, self.encoded_min_chars)
        canonical = _progress_lines(texts, reasons)
        undecided = self._undecided(texts, final, reasons, payloads, chained)
        out.decided_to = min(starts[undecided], len(window)) if undecided < len(texts) else len(window)
        for i in range(min(undecided, len(texts))):
            end = min(starts[i + 1], len(window))
            reason = reasons[i]
            text = reason if reason is not None else canonical.get(i) or _escape_controls(texts[i])
            out.lines.append(ScreenedLine(starts[i], end, text, reason is not None))
        return out

    def _payloads(self, texts: list[str]) -> list[int]:
        return [payload_chars(t) if len(t) <= self.max_line_chars else 0 for t in texts]

    def _reasons(
        self, texts: list[str], payloads: list[int], judged: list[str]
    ) -> tuple[list[str | None], ChainResult | None]:
        """Why each line is withheld (None: shown), and the chains of all-digit identifiers'
        pieces found one a line among other numbers (`DigitChains`); ``judged`` is ``texts``
        with the known values blanked, for the encoded-data tests."""
        reasons: list[str | None] = [None] * len(texts)
        sums = list(accumulate(payloads, initial=0))
        runs = [longest_run(text) if len(text) <= self.max_line_chars else 0 for text in judged]
        # withheld as encoded data whatever they name: left out of the costlier readings
        encoded = frozenset(
            i
            for i, text in enumerate(texts)
            if len(text) <= self.max_line_chars
            and (
                runs[i] >= self.encoded_min_chars
                or (payloads[i] and _context_payload(sums, i) >= self.encoded_min_chars)
            )
        )
        overlong = frozenset(i for i, text in enumerate(texts) if len(text) > self.max_line_chars)
        anyway = encoded | overlong
        chained = None
        if self.chains:
            chained = self._chained(texts, anyway)
        named = disguised_lines(texts, self.matcher, self.squeezed, anyway)
        if self.matcher:
            named.update(h.line - 1 for h in self.matcher.find("\n".join(texts), limit=100_000))
        if self.split:  # "MRN part 1: 0048" / "part 2: 213": every line of the parts
            named.update(line - 1 for chain in self.split.chains("\n".join(texts)) for line in chain)
        if self.squeezed:  # "PAT-123" / "456": wrapped across lines, every line it runs over
            named.update(self.squeezed.wrapped_lines([squeeze(t) for t in texts]))
            # "C1o2m3p4r5" / "e6s7s8e9d0S1a2m3p4l5e6s7": a name with digits between its letters
            named.update(self.squeezed.wrapped_mixed_lines(texts, anyway))
            # "item C" / "item o" / ...: a name down a column of lines, or of \r redraws
            named.update(self._columns(texts, anyway))
        if chained is not None:  # "step 12345 id-part 0048" / "step 12346 id-part 213"
            named.update(chained.hits)
        for i in range(len(texts)):
            if i in overlong:
                # Fixed words only: a length the job chose would itself carry a number out.
                reasons[i] = f"[tre] withheld a line longer than {self.max_line_chars} characters"
            elif i in encoded:
                reasons[i] = ENCODED_RUN if runs[i] >= self.encoded_min_chars else ENCODED_CONTEXT
            elif i in named:
                reasons[i] = "[tre] withheld a line naming an identifier from the dataset"
        _withhold_tails(texts, reasons, encoded)
        return reasons, chained

    def _columns(self, texts: list[str], anyway: frozenset[int]) -> set[int]:
        """The lines an identifier runs down a column of (`egress_review.columns`), each
        ``\r`` redraw of a line read as a line of its own (round 22: "frame 0 C\rframe 1 o")."""
        segments, owner = _redraws(texts)
        return column_lines(segments, self.squeezed, owner, anyway)

    def _chained(self, texts: list[str], anyway: frozenset[int]) -> ChainResult:
        """The digit chains (`DigitChains`) over the log's lines cut at carriage returns too,
        as the 0-based lines they lie on: a progress bar redrawn with ``\r`` is one line of
        the log, each redraw a line to its reader, so "10% step 1000 0048\r20% step 1001 213"
        is two pieces (round 20), and the screen shows the ``\r`` escaped, every redraw read."""
        segments, owner = _redraws(texts)
        if len(segments) == len(texts):
            return self.chains.search(texts, long_alone=MAX_NUMERIC_CHARS, skip=anyway)
        skip = frozenset(j for j, i in enumerate(owner) if i in anyway)
        found = self.chains.search(segments, long_alone=MAX_NUMERIC_CHARS, skip=skip)
        opened = None if found.open_at is None else owner[found.open_at]
        return ChainResult({owner[j] for j in found.hits}, opened)

    def _undecided(
        self,
        texts: list[str],
        final: bool,
        reasons: list[str | None],
        payloads: list[int],
        chained: ChainResult | None,
    ) -> int:
        """Index of the first line that must wait: an encoded-looking line, not yet withheld,
        whose following context is not all written yet, a line that may be the first part
        of a labelled identifier whose next part could still be written (`SplitIndex`), or
        the last line when it ends an open digit chain (`DigitChains`)."""
        if final:
            return len(texts)
        wait = len(texts)
        if self.split and self.split.first_open_line("\n".join(texts)) is not None:
            # A labelled identifier's parts so far, the next part possibly still to come: the
            # last line waits, so a part written last is judged with the line after it
            # ("MRN part 1: 0048" then "part 2: 213", redteam13). Only the last line (round
            # 19): holding every line from the first part, up to three, made a follower of
            # "epoch 12" / word lines, or "in_channels=64 out_channels=128", wait.
            wait = len(texts) - 1
        if self.squeezed:
            # The last lines ending with the start of an identifier (one character or more,
            # however many blank lines lie between its pieces) wait for the next line, which
            # could finish it ("PAT-123" now, "456" next).
            tail = self.squeezed.wrap_tail(texts)
            begun = self.squeezed.open_wrap_start([squeeze(t) for t in texts[tail:]], texts[tail:])
            if begun is not None:
                wait = min(wait, tail + begun)
        if chained is not None and chained.open_at == len(texts) - 1:
            # The last line, ending a chain that spells the start of a date, MRN or UID, waits
            # for the next line, which could complete it; only the last line ever waits on a
            # chain (round 16 held every line from its first piece: a follower of "step 1 of
            # 3" / "step 2 of 3" saw nothing), so the earlier pieces have been shown.
            wait = min(wait, len(texts) - 1)
        if payloads[-1] and reasons[-1] is None:
            # An encoded-looking line waits while it is the last: the line after it is in its
            # context (`_judged_for_follower`). Only the last line (round 20: up to
            # `CONTEXT_LINES` lines waited for their context to be written).
            wait = min(wait, len(texts) - 1)
        return wait

    # -- what a researcher gets ---------------------------------------------------------------
    def render(self, screening: Screening, offset: int, upto: int | None = None) -> bytes:
        """The judged lines starting at or after ``offset`` (and ending by ``upto``)."""
        lines = [
            line.text
            for line in screening.lines
            if line.start >= offset and (upto is None or line.end <= upto)
        ]
        return ("\n".join(lines) + "\n").encode() if lines else b""

    def limit_notice(self) -> bytes:
        return (
            f"[tre] the rest of this log is withheld from researchers (limit "
            f"{self.limit_bytes // 1024} KiB); admins and auditors can read it in full\n"
        ).encode()


def _redraws(texts: list[str]) -> tuple[list[str], list[int]]:
    """Each line cut at its carriage returns (a progress bar's redraws, each a line to its
    reader), and for each piece the index of the line it came from."""
    segments: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        for segment in text.split("\r"):
            segments.append(segment)
            owner.append(i)
    return segments, owner
