"""The fixed vocabulary of a cohort job's progress lines.

Why a vocabulary: a job's log is an output channel that a researcher reads live, so the log
screen (`egress_review.logscreen`) must be able to tell a genuine progress report from job
text dressed up as one. A progress line holds fixed words and counts only, in exactly one of
these forms::

    tre-progress: 12/40 series done, 1 failed
    tre-series: 12/40 ok
    tre-series: 13/40 resumed
    tre-series: 14/40 failed: missing-slices

The series is named by its position in the cohort (1-based, series sorted by UID; the index
is recorded in ``manifest.json``), never by a UID or path, and a failure by a reason code
from `REASONS`. The screen re-prints an accepted line from the parsed numbers, withholds any
line that mentions the prefixes without matching, and checks the counts against the earlier
lines (`ProgressTracker`); ``tre logs`` draws its progress bar from the same lines.

This module is imported by the job, the airlock's log screen and the CLI: standard library
only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

PROGRESS_PREFIX = "tre-progress:"
SERIES_PREFIX = "tre-series:"
# Counts are decimal without leading zeros (so a width cannot carry anything) and below a
# million series per job.
_N = r"(0|[1-9][0-9]{0,5})"

# Reason code -> what it means. Codes only go to the log; the one-line reason itself goes to
# manifest.json, which leaves through the airlock.
REASONS: dict[str, str] = {
    "missing-slices": "slice positions leave gaps (missing slices)",
    "uneven-spacing": "slice positions are not equally spaced",
    "mixed-orientation": "slices with different orientations share the series",
    "not-one-stack": "slices or frames at one position: several stacks, phases or b-values share the series",
    "undecodable-pixels": "no installed decoder reads the pixel data",
    "too-large": "the volume or its resampled grid does not fit in the job's memory",
    "invalid-series": "the series is inconsistent or not a volume",
    "suv-tags": "PET tags needed for SUVbw are missing or unsupported",
    "invalid-input": "the input cannot be preprocessed as given",
    "write-failed": "the output could not be written",
    "internal-error": "an unexpected failure inside the job",
}
_REASON = "|".join(re.escape(r) for r in REASONS)

_PROGRESS_RE = re.compile(rf"tre-progress: {_N}/{_N} series done, {_N} failed")
_SERIES_RE = re.compile(rf"tre-series: {_N}/{_N} (ok|resumed|failed: (?:{_REASON}))")
# Any line that mentions the vocabulary's prefixes, however disguised by case or spacing,
# must match exactly or be withheld (not words that merely end in "tre": "centre series").
_CLAIMS_RE = re.compile(r"(?<![a-z0-9])tre[\W_]*(progress|series)", re.IGNORECASE)

Outcome = Literal["ok", "resumed", "failed"]


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` series finished (ok, resumed or failed), ``failed`` of them failed."""

    done: int
    total: int
    failed: int

    def line(self) -> str:
        return f"{PROGRESS_PREFIX} {self.done}/{self.total} series done, {self.failed} failed"


@dataclass(frozen=True)
class SeriesResult:
    """The outcome of series number ``index`` (1-based) of ``total``."""

    index: int
    total: int
    outcome: Outcome
    reason: str | None = None

    def line(self) -> str:
        tail = f"failed: {self.reason}" if self.outcome == "failed" else self.outcome
        return f"{SERIES_PREFIX} {self.index}/{self.total} {tail}"


def claims_vocabulary(text: str) -> bool:
    """Whether a log line presents itself as a progress line (and so must be one exactly)."""
    return _CLAIMS_RE.search(text) is not None


def parse(text: str) -> Progress | SeriesResult | None:
    """The progress line ``text`` is, or None when it is not exactly one (counts checked)."""
    m = _PROGRESS_RE.fullmatch(text)
    if m:
        done, total, failed = (int(g) for g in m.groups())
        ok = 1 <= total and done <= total and failed <= done
        return Progress(done, total, failed) if ok else None
    m = _SERIES_RE.fullmatch(text)
    if m:
        index, total = int(m.group(1)), int(m.group(2))
        if not 1 <= index <= total:
            return None
        word = m.group(3)
        if word.startswith("failed: "):
            return SeriesResult(index, total, "failed", word.removeprefix("failed: "))
        return SeriesResult(index, total, "ok" if word == "ok" else "resumed")
    return None


@dataclass
class ProgressTracker:
    """Checks each progress line against the earlier ones of the same log: one cohort size,
    counts that never go down, each series reported once. A job printing made-up counts to
    carry numbers out thus gets a monotone counter at most."""

    total: int | None = None
    done: int = 0
    failed: int = 0
    reported: set[int] = field(default_factory=set)

    def accept(self, item: Progress | SeriesResult) -> bool:
        if self.total is not None and item.total != self.total:
            return False
        if isinstance(item, Progress):
            if item.done < self.done or item.failed < self.failed:
                return False
            self.done, self.failed = item.done, item.failed
        else:
            if item.index in self.reported:
                return False
            self.reported.add(item.index)
        self.total = item.total
        return True
