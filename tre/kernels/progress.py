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
from collections.abc import Callable
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


# A cohort's log stays this small whatever its size (bytes, roughly): the screened log a
# researcher sees is cut at the policy's per-job budget (256 KiB by default) and counted
# against the project's daily budget, and a line for every series of a 5,000-series cohort
# (~70 bytes each) took 340 KiB: the progress bar stopped and the final line never came.
MAX_PROGRESS_LINES = 100  # progress lines per cohort, besides the first and the last
MAX_SERIES_LINES = 100  # per-series lines: every series of a small cohort, else failures only


def reason_counts(by_reason: dict[str, int]) -> str:
    """``code n, code n`` in code order: how the log names failures in bulk (codes only,
    never the reasons, which quote the data)."""
    return ", ".join(f"{code} {n}" for code, n in sorted(by_reason.items()))


@dataclass
class ProgressReporter:
    """Which progress lines a cohort job prints, so that the log's volume is bounded
    independently of the cohort's size while the researcher still sees the bar move,
    the failures (each one, up to a cap; past it, counts per reason code) and the end.

    A cohort of at most `MAX_SERIES_LINES` series prints what it always printed: a series
    line per series and a progress line after each. A larger one prints a progress line per
    1/`MAX_PROGRESS_LINES` of the cohort, failed series' lines up to the cap and no ok or
    resumed series lines (the progress counts say as much); `summary` then gives the
    failures per reason code, in a line of fixed words and counts.
    """

    total: int
    emit: Callable[[str], None]
    max_progress_lines: int = MAX_PROGRESS_LINES
    max_series_lines: int = MAX_SERIES_LINES
    done: int = 0
    failed: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    series_lines: int = 0
    unreported_failures: int = 0
    _printed_done: int = -1

    def record(self, index: int, outcome: Outcome, reason: str | None = None) -> None:
        """Series ``index`` finished; prints its line if the caps allow."""
        self.done += 1
        if outcome == "failed":
            self.failed += 1
            code = reason or "internal-error"
            self.by_reason[code] = self.by_reason.get(code, 0) + 1
        wanted = self.total <= self.max_series_lines or outcome == "failed"
        if wanted and self.series_lines < self.max_series_lines:
            self.series_lines += 1
            self.emit(SeriesResult(index, self.total, outcome, reason).line())
        elif outcome == "failed":
            self.unreported_failures += 1

    def progress(self, force: bool = False) -> None:
        """A progress line, if due: forced, the first, the last, or 1/``max_progress_lines``
        of the cohort since the last one."""
        step = max(1, -(-self.total // max(1, self.max_progress_lines)))
        due = force or self._printed_done < 0 or self.done >= self.total
        if (due or self.done - self._printed_done >= step) and self.done != self._printed_done:
            self._printed_done = self.done
            self.emit(Progress(self.done, self.total, self.failed).line())

    def summary(self) -> str | None:
        """Failures per reason code when some were not printed one by one (else None)."""
        if not self.unreported_failures:
            return None
        return f"failed series by reason: {reason_counts(self.by_reason)}"
