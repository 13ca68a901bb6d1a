"""How ``tre logs`` (and ``tre submit --wait``) show a job's log.

On a terminal, the progress lines of a cohort job (the fixed vocabulary of
`tre.kernels.progress`, which the log screen passes to researchers) drive one rich progress
bar instead of scrolling past: series done of the cohort's total and how many failed. A
failed series is printed above the bar with its reason code spelt out; the other lines are
printed as they are (control characters shown inertly). Piped or redirected, the log is
written as it came, one plain line per line, for scripts and files.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from tre.cli.output import terminal_safe
from tre.kernels import progress as vocabulary


class _WhenCounted(ProgressColumn):
    """A column shown only once the job has reported its cohort size (other jobs: a spinner)."""

    def __init__(self, inner: ProgressColumn) -> None:
        super().__init__()
        self.inner = inner

    def render(self, task: Task) -> RenderableType:
        return Text("") if task.total is None else self.inner.render(task)


class LogView:
    """Feeds screened log text to the terminal; see the module docstring.

    ``spinner``: show the job's state from the start (following a job); otherwise the bar
    appears only if the log holds progress lines.
    """

    def __init__(self, console: Console, job_id: str, spinner: bool = False) -> None:
        self.console = console
        self.live = console.is_terminal
        self.job_id = job_id
        self._partial = ""
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            _WhenCounted(BarColumn()),
            _WhenCounted(MofNCompleteColumn()),
            _WhenCounted(TextColumn("series, {task.fields[failed]} failed", markup=False)),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._bar.add_task(f"job {job_id}", total=None, failed=0)
        self._started = False
        if spinner and self.live:
            self._start()

    def _start(self) -> None:
        if not self._started:
            self._bar.start()
            self._started = True

    def __enter__(self) -> LogView:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def state(self, state: str) -> None:
        """The job's state (from the server), next to the spinner."""
        if state:
            self._bar.update(self._task, description=f"job {self.job_id}: {state}")

    def feed(self, text: str) -> None:
        """More of the log; whole lines are shown, a trailing partial line waits for its end."""
        if not self.live:
            sys.stdout.write(terminal_safe(text))
            sys.stdout.flush()
            return
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line.removesuffix("\r"))

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        if self._started:
            self._bar.stop()
            self._started = False

    def _line(self, line: str) -> None:
        item = vocabulary.parse(line)
        if isinstance(item, vocabulary.Progress):
            self._start()
            self._bar.update(self._task, total=item.total, completed=item.done, failed=item.failed)
        elif isinstance(item, vocabulary.SeriesResult):
            self._start()
            if item.outcome == "failed" and item.reason is not None:
                meaning = vocabulary.REASONS[item.reason]
                self._print(f"series {item.index}/{item.total} failed: {item.reason} ({meaning})")
        else:
            self._print(terminal_safe(line))

    def _print(self, text: str) -> None:
        # Plain text: no markup or highlighting, so a line cannot style or fake anything.
        self.console.print(Text(text), soft_wrap=True, highlight=False)
