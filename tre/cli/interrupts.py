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
(`check`). A second press (or SIGTERM) ends the process at once with the same line, whatever
the first one started; SIGTERM is taken like Ctrl-C (exit status 143). Long-running services
raise nothing: the first signal asks them to stop (`serve_until_stopped`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C
MESSAGE = "error: interrupted"


class Interrupted(Exception):
    """Ctrl-C, with what the user should know (the job keeps running, how to follow it):
    printed as one line by the entry point, exit status 130."""


_pressed = False
_signum = int(signal.SIGINT)
_exit_at_once = True
# A long-running service (`tre serve`, `tre worker`, `tre hub serve`, `tre node agent`):
# the first SIGINT/SIGTERM asks it to stop (the callbacks), nothing is raised.
_service = False
_stop_callbacks: list[Callable[[], None]] = []
STOPPING = "stopping (Ctrl-C again to stop at once)"


def _exit_now(signum: int) -> None:
    """One line and the shell's status for the signal; no Python code of the command runs
    again (a second interrupt while it cleans up, or one before it started)."""
    os.write(2, (MESSAGE + "\n").encode())
    os._exit(128 + signum)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (`kill`, systemd, Kubernetes).

    Why a second one ends at once: before, a second Ctrl-C landed in whatever cleanup the
    first had started (a thread join, uvicorn's shutdown, the interpreter's exit) and printed
    a traceback, or was swallowed there. And it never raises inside a service: uvicorn
    re-sends the signals it caught after its loop stopped, and a KeyboardInterrupt raised
    there cancelled its lifespan task with a traceback."""
    global _pressed, _signum
    if _pressed or _exit_at_once:
        _exit_now(signum)
    _pressed, _signum = True, signum
    if _service:
        os.write(2, (STOPPING + "\n").encode())
        for callback in list(_stop_callbacks):
            callback()
        return
    raise KeyboardInterrupt


def install() -> None:
    """Take over SIGINT and SIGTERM, first thing in the console script (only the main thread
    may; run from another, as a library, Python's own handling stays)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


def serve_until_stopped() -> None:
    """From now on (a service's command has started) the first SIGINT/SIGTERM only asks it to
    stop: `stop_requested` turns true and the `on_stop` callbacks run (in the signal handler:
    they may only set flags); a second ends the process at once."""
    global _service
    _service = True


def finished() -> None:
    """The command is done: a signal from now on ends the process at once with the one line
    (whatever the interpreter's exit still waits for: threads, atexit handlers), and never
    raises into that exit, where it printed "Exception ignored ... KeyboardInterrupt"."""
    global _exit_at_once
    _exit_at_once = True


def on_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` when a service is asked to stop (now, if it already was)."""
    _stop_callbacks.append(callback)
    if _pressed:
        callback()


def exit_status() -> int:
    """What a shell reports for the signal that interrupted the command: 130 or 143."""
    return 128 + _signum


def stop_requested() -> bool:
    return _pressed


def wait_for_stop(poll_s: float = 0.2) -> None:
    """Block the main thread until a service is asked to stop (a polled flag: the signal
    handler takes no lock that the main thread might hold)."""
    while not _pressed:
        time.sleep(poll_s)


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
