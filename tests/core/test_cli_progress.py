"""``tre logs``: a cohort job's progress lines become a progress bar on a terminal and stay
plain lines when piped; failures are spelt out; nothing else in the log is lost or obeyed."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from tests.security.test_cli_terminal import FakeClient, FakeResponse
from tre.cli import jobs as jobs_cli
from tre.kernels.progress import Progress, SeriesResult

JOB = {"id": "j1", "state": "succeeded", "reason": "exited with code 0"}


def cohort_log(total: int = 4, bad: int = 3) -> str:
    lines = ["[tre] local sandbox: limits ...", Progress(0, total, 0).line()]
    failed = 0
    for i in range(1, total + 1):
        if i == bad:
            failed += 1
            lines.append(SeriesResult(i, total, "failed", "missing-slices").line())
        else:
            lines.append(SeriesResult(i, total, "ok").line())
        lines.append(Progress(i, total, failed).line())
    lines.append(f"done {total} series: ok {total - 1} resumed 0 failed 1 (details in manifest.json)")
    return "\n".join(lines) + "\n"


def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """A terminal-like console (not interactive, so the bar is drawn once, when it stops)."""
    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, force_interactive=False, width=120, color_system=None)
    monkeypatch.setattr(jobs_cli, "console", term)
    return buf


class ChunkedClient(FakeClient):
    """The log arrives in pieces (cut mid-line too) while the job runs, then the job ends."""

    def __init__(self, payload: Any, chunks: list[bytes]) -> None:
        super().__init__(payload)
        self.chunks = chunks

    def request(self, method: str, url: str, params: Any = None, **kw: Any) -> FakeResponse:
        chunk = self.chunks.pop(0) if self.chunks else b""
        resp = FakeResponse(chunk)
        resp.headers["X-Job-State"] = "running" if self.chunks or chunk else "succeeded"
        return resp


@pytest.mark.parametrize("follow", [False, True])
def test_terminal_shows_a_bar_and_the_failures(monkeypatch: pytest.MonkeyPatch, follow: bool) -> None:
    buf = terminal(monkeypatch)
    log = cohort_log().encode()
    client: FakeClient = (
        ChunkedClient(JOB, [log[:50], log[50:333], log[333:]]) if follow else FakeClient(JOB, log)
    )
    monkeypatch.setattr(jobs_cli, "ApiClient", lambda: client)
    monkeypatch.setattr(jobs_cli.time, "sleep", lambda s: None)
    jobs_cli.logs("j1", follow=follow)
    out = buf.getvalue()
    assert "4/4 series, 1 failed" in out and "━" in out
    assert "series 3/4 failed: missing-slices (slice positions leave gaps (missing slices))" in out
    assert "[tre] local sandbox: limits ..." in out and "done 4 series: ok 3" in out
    assert "tre-progress:" not in out and "tre-series: 1/4 ok" not in out  # drawn, not scrolled


def test_piped_output_is_the_log_line_by_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    log = cohort_log()
    monkeypatch.setattr(jobs_cli, "ApiClient", lambda: FakeClient(JOB, log.encode()))
    jobs_cli.logs("j1", follow=False)
    assert capsys.readouterr().out == log


def test_lines_that_only_look_like_progress_are_printed_inertly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Staff read the raw log: a malformed or hostile progress line is text, not a bar update."""
    buf = terminal(monkeypatch)
    log = (
        "tre-progress: 1/2 series done, 0 failed\n"
        "tre-progress: 9/2 series done, 0 failed\n"
        "tre-series: 2/2 failed: [bold]fake[/bold] \x1b]52;c;aGk=\x07\n"
    )
    monkeypatch.setattr(jobs_cli, "ApiClient", lambda: FakeClient(JOB, log.encode()))
    jobs_cli.logs("j1", follow=False)
    out = buf.getvalue()
    assert "1/2 series, 0 failed" in out
    assert "tre-progress: 9/2 series done, 0 failed" in out
    assert "[bold]fake[/bold]" in out and "\\x1b]52" in out and "\x1b]" not in out


def test_an_ordinary_job_gets_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = terminal(monkeypatch)
    monkeypatch.setattr(
        jobs_cli, "ApiClient", lambda: FakeClient(JOB, b"epoch 1 loss 0.3\nepoch 2 loss 0.2\n")
    )
    jobs_cli.logs("j1", follow=False)
    assert buf.getvalue() == "epoch 1 loss 0.3\nepoch 2 loss 0.2\n"
