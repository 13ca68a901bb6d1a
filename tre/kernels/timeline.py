"""An opt-in timeline of the cohort job: which stage ran when, on which thread.

Why: the job overlaps reading, decoding, kernels and writing on every core, so its wall time
is set by the parts that do not overlap (start-up before the first slice is read, the main
thread waiting between series, the tail after the last kernel). Those are invisible in
per-stage CPU figures; a timeline shows them. It is off by default and costs nothing then.

Enable it with ``python -m tre.kernels.job --timeline FILE`` or the environment variable
``TRE_KERNELS_TIMELINE=FILE``: at the end of the job FILE gets one JSON object per line,
``{"stage": ..., "series": N or null, "thread": ..., "start": s, "end": s}``, times in
seconds since the process started (read from ``/proc/self/stat``; since the timeline was
created where that is not available). Series are named by their 1-based number in the
cohort, never by UID or path, and nothing goes to the job log: the file is written where
the caller says (outside the researcher-facing channel unless the caller puts it there).
``python -m tre.kernels.timeline FILE`` prints a summary: when the first slice was read and
the first kernel ran, how long the main thread waited, and the tail after the last kernel.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV_VAR = "TRE_KERNELS_TIMELINE"


def process_age_s() -> float:
    """Seconds since this process started (0.0 where /proc is not readable)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


class Timeline:
    """Collects (stage, series, thread, start, end) spans; thread-safe, cheap when disabled."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._origin = time.perf_counter() - process_age_s() if path is not None else 0.0

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def now(self) -> float:
        """Seconds since the process started."""
        return time.perf_counter() - self._origin

    def add(
        self, stage: str, series: int | None, start: float, end: float, thread: str | None = None
    ) -> None:
        """Record a span measured with `now` (a no-op when disabled); ``thread`` defaults to
        the calling thread's name."""
        if self.path is None:
            return
        span = {
            "stage": stage,
            "series": series,
            "thread": thread or threading.current_thread().name,
            "start": round(start, 6),
            "end": round(end, 6),
        }
        with self._lock:
            self._spans.append(span)

    @contextmanager
    def span(self, stage: str, series: int | None = None) -> Iterator[None]:
        """Record the time spent inside the ``with`` block as ``stage``."""
        if self.path is None:
            yield
            return
        start = self.now()
        try:
            yield
        finally:
            self.add(stage, series, start, self.now())

    def save(self) -> None:
        """Write the spans as JSON lines, in start order (a no-op when disabled)."""
        if self.path is None:
            return
        with self._lock:
            spans = sorted(self._spans, key=lambda s: (s["start"], s["end"]))
        text = "".join(json.dumps(s, sort_keys=True) + "\n" for s in spans)
        self.path.write_text(text, encoding="utf-8")


DISABLED = Timeline(None)


def from_env(path: Path | None = None) -> Timeline:
    """The timeline for ``path``, else for ``$TRE_KERNELS_TIMELINE``, else the disabled one."""
    if path is None and os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
    return Timeline(path) if path is not None else DISABLED


def summary(spans: list[dict[str, Any]]) -> dict[str, float]:
    """The serial parts of a job, in seconds since the process started (see module doc)."""

    def first(stage: str) -> float:
        return min((s["start"] for s in spans if s["stage"] == stage), default=float("nan"))

    def last_end(stage: str) -> float:
        return max((s["end"] for s in spans if s["stage"] == stage), default=float("nan"))

    def total(stage: str) -> float:
        return sum(s["end"] - s["start"] for s in spans if s["stage"] == stage)

    end = max(s["end"] for s in spans)
    return {
        "start_up_end": last_end("start-up"),
        "first_pixels_read": first("pixels"),
        "first_kernel": first("kernels"),
        "last_kernel_end": last_end("kernels"),
        "end": end,
        "tail_after_last_kernel": end - last_end("kernels"),
        "kernels_total": total("kernels"),
        "main_waiting_for_load": total("wait-load"),
        "main_waiting_for_write": total("wait-write"),
        "discover": total("discover"),  # all processes' parsing, summed
        "discover_end": last_end("discover"),  # when the last share was parsed
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tre.kernels.timeline TIMELINE.jsonl", file=sys.stderr)
        return 2
    lines = Path(args[0]).read_text(encoding="utf-8").splitlines()
    spans = [json.loads(line) for line in lines if line.strip()]
    if not spans:
        print("error: empty timeline", file=sys.stderr)
        return 2
    for key, value in summary(spans).items():
        print(f"{key:24s} {value:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
