"""Ctrl-C at any moment ends `tre` with one line on stderr and exit status 130.

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be.
While `tre` is still importing (a second or more on a loaded machine, longer than a person
takes to change their mind) that is inside some library's module code: the process printed
a traceback and died by the signal, and an extension module interrupted in its
initialisation turned the interrupt into an unrelated error (exit 1). And typer turns a
KeyboardInterrupt in a command into a silent exit status 130, without the line.

So the console script installs this handler before it imports anything heavy. Until the
command starts, a Ctrl-C ends the process at once: nothing has been done that needs undoing.
Once the command runs, it raises KeyboardInterrupt, so that the command can clean up and say
what goes on without it (a job followed with ``--wait`` keeps running); the press is also
remembered, so a library that swallows the exception cannot keep a follow loop running
(`check`).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C
MESSAGE = "error: interrupted"


class Interrupted(Exception):
    """Ctrl-C, with what the user should know (the job keeps running, how to follow it):
    printed as one line by the entry point, exit status 130."""


_pressed = False
_exit_at_once = True


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _pressed
    _pressed = True
    if _exit_at_once:
        os.write(2, (MESSAGE + "\n").encode())
        os._exit(EXIT_INTERRUPTED)
    raise KeyboardInterrupt


def install() -> None:
    """Take over SIGINT, first thing in the console script (only the main thread may; run
    from another, as a library, Python's own handling stays)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def command_started() -> None:
    """From now on a Ctrl-C raises KeyboardInterrupt for the command to handle."""
    global _exit_at_once
    _exit_at_once = False


def pressed() -> bool:
    """Whether Ctrl-C was pressed since `install`."""
    return _pressed


def check() -> None:
    """Raise KeyboardInterrupt again if Ctrl-C was pressed: for loops that must not outlive
    one that a library caught and dropped."""
    if _pressed:
        raise KeyboardInterrupt
