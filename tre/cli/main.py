"""Entry point of the `tre` command (the console script `tre.cli.main:run`).

Every error ends as one line on stderr: exit 1 for errors, 2 for usage mistakes, 130 when
interrupted (Ctrl-C), 141 when the reader of stdout went away. Bare `tre` prints the help
and exits 0. The commands live in `tre.cli.app`; this module imports only the standard
library before it has taken over Ctrl-C (`tre.cli.interrupts`), so that a Ctrl-C pressed
while the rest is still importing ends with the same one line.
"""

from __future__ import annotations

import contextlib
import os
import sys

from tre.cli import interrupts

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `tre jobs | head -1`


def _print_error(message: str) -> None:
    """One line on stderr; plain text (no markup), whitespace folded."""
    from tre.cli.output import err_console, terminal_safe

    text = " ".join(terminal_safe(message).split())
    err_console.print(f"error: {text}", highlight=False, soft_wrap=True, markup=False)


def _usage_error(exc: Exception) -> None:
    """Usage mistakes (missing or malformed arguments): one line, exit 2."""
    fmt = getattr(exc, "format_message", None)
    message = fmt() if callable(fmt) else str(exc)
    ctx = getattr(exc, "ctx", None)
    hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
    _print_error(f"{message}{hint}")
    sys.exit(int(getattr(exc, "exit_code", 2)))


def _interrupted(message: str = "interrupted") -> None:
    _print_error(message)
    sys.exit(interrupts.exit_status())


def run() -> None:
    """The console script: usage mistakes and failures alike end as one line on stderr.

    What no command turned into a message (a file the system refuses, an answer of a shape
    the CLI did not expect) still ends as one line naming the kind of failure; ``TRE_DEBUG=1``
    shows the traceback instead, for a bug report.
    """
    interrupts.install()
    import typer

    from tre.cli.app import app
    from tre.cli.client import CliError
    from tre.errors import TreError
    from tre.executors.base import ExecutorError

    interrupts.command_started()
    try:
        rv = app(standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # typer vendors click: match by name
            _usage_error(exc)
        sys.exit(0)  # bare `tre` (or a bare group): the help was printed, nothing failed
    except interrupts.Interrupted as exc:
        _interrupted(str(exc))
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except (CliError, TreError, ExecutorError) as exc:
        _print_error(str(exc))
        sys.exit(1)
    except BrokenPipeError:  # the reader of our stdout went away: nothing to say, to no one
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except SystemExit:
        # click meets a closed pipe (EPIPE) itself: it wraps stdout so that the final flush
        # is quiet and exits 1; say 141 instead, as a shell does for a command killed by SIGPIPE.
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            sys.exit(EXIT_BROKEN_PIPE)
        raise
    except OSError as exc:
        if interrupts.pressed():
            _interrupted()
        what = f"cannot use {exc.filename}" if exc.filename else "system error"
        _print_error(f"{what}: {exc.strerror or exc}")
        sys.exit(1)
    except Exception as exc:
        if interrupts.pressed():  # a library turned the KeyboardInterrupt into something else
            _interrupted()
        if os.environ.get("TRE_DEBUG"):
            raise
        _print_error(
            f"unexpected {type(exc).__name__}: {exc} (a bug in tre or an API of another version; "
            "TRE_DEBUG=1 shows where)"
        )
        sys.exit(1)
    if rv == interrupts.EXIT_INTERRUPTED and interrupts.pressed():
        _interrupted()  # typer turned a KeyboardInterrupt in the command into a bare exit status
    interrupts.finished()
    code = rv if isinstance(rv, int) else 0
    if interrupts.stop_requested():
        # A service stopped by a signal has stopped everything it ran: leave without the
        # interpreter's teardown, during which Python puts the default handlers back and
        # a second Ctrl-C killed the process by the signal (status -2 instead of 0).
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    run()
