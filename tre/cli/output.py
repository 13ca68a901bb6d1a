"""Rendering helpers shared by CLI commands (rich tables, one-line errors)."""

from __future__ import annotations

import errno
import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _reader_went_away(self: Console) -> None:
    """A reader that went away is a BrokenPipeError for rich too, as it is for `print`.

    rich's own handler exits 1 with nothing said, so `tre admin doctor | head -1` and
    `tre --help | head -1` looked like failures; the entry point (`tre.cli.main`) turns
    BrokenPipeError into 141, what a shell reports for any command in a pipeline whose reader
    stopped early. Set on the class (rich's documented hook) so that every console in the
    process has it, typer's help and progress bars included, not only the two below."""
    self.quiet = True  # nothing more is written to a pipe nobody reads
    raise BrokenPipeError(errno.EPIPE, "the reader of this output went away")


Console.on_broken_pipe = _reader_went_away  # type: ignore[method-assign]

# Piped or redirected, stdout is read by scripts: a line is never folded at rich's default
# 80 columns there (`tre image import`'s "tre image approve REF --project P" hint, a
# download's path and the like came out cut in two). On a terminal rich folds as usual.
console = Console(soft_wrap=not sys.stdout.isatty())
# Never folded at the console's width: a message on stderr is one line however long (the
# terminal wraps it for the eye), so a script reading stderr gets whole lines; piped, rich
# folded warnings such as `tre login --token`'s at 80 columns into two.
err_console = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (the full records) for scripts.")]
# A port outside 1-65535 is a usage mistake (exit 2); it reached bind() and ended as
# "unexpected OverflowError ... a bug in tre".
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")]


def print_json(data: Any) -> None:
    """JSON on stdout, never through rich: a console wraps long lines at its width, which
    would break a string in two when piped (80 columns)."""
    print(json.dumps(data, indent=2, sort_keys=True))


# C0 and C1 control characters except tab, newline and the carriage return of a CRLF line end:
# ESC starts the ANSI and OSC sequences a terminal obeys (recolour, retitle, rewrite the
# clipboard, hide text), and a lone carriage return writes the rest of a line over its start
# (redteam13). Also Unicode's bidirectional controls (embeddings, overrides, isolates, marks),
# which reorder what a terminal shows ("\u202egnp.py" reads "yp.png"), and its line and
# paragraph separators (U+2028/2029), which pagers, editors and `str.splitlines` take for a line
# end: a log line the screen judged as one would be read as two.
# A job the database still calls running whose end waits on the server's disk for the
# database (the API's ``end_pending``): said as such, its outcome not until it is recorded.
ENDING = "ending (it ended; how is recorded once the database takes it)"

_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|\r(?!\n)"
)


def terminal_safe(text: str) -> str:
    """Text that came from a job or another user, with control characters shown as ``\\xNN``
    (``\\uNNNN`` for the bidirectional ones).

    Job logs, output names, check reasons and comments are written by researchers; printing
    them raw would let one of them drive the terminal of whoever reads them (an admin, a
    reviewer, an auditor).
    """
    return _CONTROL.sub(_shown, text)


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group()[0])
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


_LINE_BREAKS = str.maketrans({"\r": "\\x0d", "\n": "\\x0a", "\t": "\\x09"})


def untrusted(value: object) -> str:
    """A value from the server made safe for `console.print` on one line: no control characters,
    no markup, and no line break or tab either (a ``\\r`` or ``\\n`` in a name or comment would
    start a line of the writer's choosing under the CLI's own, e.g. a fake "approve" vote)."""
    return escape(terminal_safe("" if value is None else str(value)).translate(_LINE_BREAKS))


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    whole: int = 1,
    clipped: Sequence[str] = (),
) -> None:
    """A table on a terminal; tab-separated lines with a header when piped or redirected.

    Never cut a value: ids and hashes must be usable as printed. The first ``whole`` columns
    (the ids) stay on one line at their full width, so a double-click or a copy takes the
    whole id even on an 80-column terminal; the other columns fold onto more lines instead,
    except the free text of ``clipped`` columns (a justification of up to 10,000 characters
    would fold into a screenful per row): on a terminal these take one line and end in an
    ellipsis where the terminal's width ends; piped, they are whole (`--json` for scripts).
    With no rows a terminal reads "TITLE: none".
    """
    if not console.is_terminal:
        print("\t".join(columns))
        for r in rows:
            print("\t".join(terminal_safe("" if v is None else str(v)).translate(_LINE_BREAKS) for v in r))
        return
    cells = [[untrusted(v) for v in r] for r in rows]
    if not cells:
        # An empty frame under a title said nothing a person could read: no rows, or none yet
        # drawn? (newcomer round 21: `tre jobs --state running`). Piped, the header alone stays.
        console.print(f"{escape(title)}: none", highlight=False)
        return
    if not clipped:
        console.print(_grid(title, columns, cells, whole))
        return
    # What the other columns take of the terminal's width is left to the clipped ones (rich
    # would otherwise squeeze the other columns to nothing to fit one long unfolded line).
    others = [i for i, c in enumerate(columns) if c not in clipped]
    rest = console.measure(
        _grid(title, [columns[i] for i in others], [[r[i] for i in others] for r in cells], whole)
    )
    room = max(12, (console.width - rest.maximum) // (len(columns) - len(others)) - 3)
    console.print(_grid(title, columns, cells, whole, clipped, room))


def _grid(
    title: str,
    columns: Sequence[str],
    cells: list[list[str]],
    whole: int,
    clipped: Sequence[str] = (),
    clip_at: int = 0,
) -> Table:
    """A rich table: the first ``whole`` columns unfolded at full width, ``clipped`` ones cut
    to one line of ``clip_at`` characters ending in an ellipsis, the rest folded."""
    t = Table(title=title, show_lines=False)
    for i, c in enumerate(columns):
        if i < whole:
            width = max([len(c), *(len(r[i]) for r in cells)])
            t.add_column(c, no_wrap=True, min_width=width)
        elif c in clipped:
            t.add_column(c, no_wrap=True, overflow="ellipsis", max_width=clip_at)
        else:
            t.add_column(c, overflow="fold")
    for r in cells:
        t.add_row(*r)
    return t


def utc_time(iso: str | None, empty: str = "-", seconds: bool = False) -> str:
    """An ISO time from the server as ``2026-12-01 04:10 UTC``: the server's times are UTC, and
    a bare ``2026-12-01T04:10:33`` (as `tre jobs` and `tre grant list` printed) did not say so,
    so a reader could take it for their local time."""
    if not iso:
        return empty
    try:
        at = datetime.fromisoformat(iso)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        at = at.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a time near year 1 or 9999 with an offset
        return untrusted(iso)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class UsageMistake(typer.BadParameter):
    """A command called in a way it cannot act on (options that need each other, nothing to
    do): exit 2 with ``(see: tre ... --help)``, as for a misspelt option. Raised as a plain
    `CliError` these ended with exit 1, the status of a failure, though nothing was tried."""

    def format_message(self) -> str:
        return self.message
