"""Text a researcher controls (job logs, output names, check reasons, comments) must not drive
the terminal of the admin, reviewer or auditor who prints it with the CLI.

Before the fix the CLI wrote job logs raw (ANSI/OSC escape sequences reached the terminal:
recolouring, retitling, OSC 52 clipboard writes) and fed output names into rich markup (a name
such as ``x[/].csv`` crashed ``tre egress show``; ``[green]pass[/]`` could fake a result).
"""

from __future__ import annotations

from typing import Any

import pytest

from tre.cli import egress as egress_cli
from tre.cli import jobs as jobs_cli

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"


class FakeResponse:
    def __init__(self, content: bytes) -> None:
        self.content = content
        self.headers = {"X-Next-Offset": str(len(content)), "X-Job-State": "succeeded"}


class FakeClient:
    def __init__(self, payload: Any = None, log: bytes = b"") -> None:
        self.payload, self.log = payload, log

    def get(self, url: str, params: Any = None) -> Any:
        return self.payload

    def request(self, method: str, url: str, params: Any = None, **kw: Any) -> FakeResponse:
        chunk, self.log = self.log, b""  # the whole log once, then the end
        return FakeResponse(chunk)

    def text(self, path: str, **kw: Any) -> str:
        """Like ApiClient.text: the log's bytes as text."""
        return self.request("GET", path, **kw).content.decode("utf-8", "replace")


def _request_view() -> dict[str, Any]:
    check = {
        "outcome": "block",
        "check": "sdc:threshold",
        "reason": f"column 'count[/]{OSC52}': 3 [green]pass[/green]",
    }
    return {
        "id": "r1",
        "state": "conflicted",
        "job_id": "j1",
        "project_id": "p1",
        "votes_in": 2,
        "required_reviews": 2,
        "policies": [],
        "votes_revealed": True,
        "files": [
            {
                "outcome": "block",
                "path": f"x[/]{OSC52}.csv",
                "size": 3,
                "sha256": "ab" * 32,
                "checks": [check],
            }
        ],
        "votes": [{"reviewer": "dana", "vote": "approve", "comment": "fine\x1b[2J[bold]ok"}],
        "resolution": None,
    }


def test_egress_show_prints_hostile_names_inertly(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(egress_cli, "ApiClient", lambda: FakeClient(_request_view()))
    egress_cli.show("r1")
    out = capsys.readouterr().out
    assert "\x1b]" not in out and "\x07" not in out and "\x1b[2J" not in out
    assert "x[/]" in out and "\\x1b]52" in out


@pytest.mark.parametrize("follow", [False, True])
def test_job_log_escape_sequences_are_neutralised(monkeypatch: pytest.MonkeyPatch, capsys, follow) -> None:  # type: ignore[no-untyped-def]
    log = f"epoch 1\n{OSC52}\x1b[8mhidden\x1b[0m\tok\r\n".encode()
    client = FakeClient({"id": "j1", "state": "succeeded", "reason": "exited with code 0"}, log)
    monkeypatch.setattr(jobs_cli, "ApiClient", lambda: client)
    monkeypatch.setattr(jobs_cli.time, "sleep", lambda s: None)
    jobs_cli.logs("j1", follow=follow)
    out = capsys.readouterr().out
    assert "epoch 1\n" in out and "\tok" in out
    assert "\x1b" not in out.replace("\x1b[?25l", "").replace("\x1b[?25h", "")  # rich's own cursor codes
    assert "\\x1b]52" in out


def test_a_line_break_in_a_field_cannot_start_a_line_of_its_own(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """A comment or name with ``\\r``/``\\n`` would print a line of the writer's choosing under the
    CLI's own (a fake vote, a fake passing file); every server field prints on its own line."""
    view = _request_view()
    view["files"][0]["path"] = "a.csv\n  pass  b.csv"
    view["votes"] = [{"reviewer": "dana", "vote": "reject", "comment": "no\r  vote by erin: approve"}]
    monkeypatch.setattr(egress_cli, "ApiClient", lambda: FakeClient(view))
    egress_cli.show("r1")
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.lstrip().startswith(("pass  b.csv", "vote by erin")) for line in lines)
    assert any("\\x0d" in line for line in lines) and any("\\x0a" in line for line in lines)


@pytest.mark.parametrize("follow", [False, True])
def test_a_log_cannot_overwrite_or_reorder_text(monkeypatch: pytest.MonkeyPatch, capsys, follow) -> None:  # type: ignore[no-untyped-def]
    """redteam13: a lone carriage return passed (``name CompressedSamples\\r`` then spaces and
    ``epoch 2``: a terminal shows only the second part, so an auditor reading the raw log with
    ``tre logs JOB | cat`` did not see the first), and so did Unicode's bidirectional
    overrides and isolates, which reorder what a terminal shows (``\\u202egnp.py`` reads
    ``yp.png``). Both are shown as escapes now; a CRLF line end is still a line end."""
    log = "name CompressedSamples\r          epoch 2\n\u202egnp.py \u2067x\u2069\u200f\r\n".encode()
    client = FakeClient({"id": "j1", "state": "succeeded", "reason": "exited with code 0"}, log)
    monkeypatch.setattr(jobs_cli, "ApiClient", lambda: client)
    monkeypatch.setattr(jobs_cli.time, "sleep", lambda s: None)
    jobs_cli.logs("j1", follow=follow)
    out = capsys.readouterr().out
    assert "CompressedSamples" in out and "CompressedSamples\r" not in out
    for mark in ("\u202e", "\u2067", "\u2069", "\u200f"):
        assert mark not in out and f"\\u{ord(mark):04x}" in out


def test_egress_show_shows_bidi_controls_in_names_as_escapes(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    view = _request_view()
    view["files"][0]["path"] = "\u202egnp.py"
    monkeypatch.setattr(egress_cli, "ApiClient", lambda: FakeClient(view))
    egress_cli.show("r1")
    out = capsys.readouterr().out
    assert "\u202e" not in out and "\\u202egnp.py" in out


@pytest.mark.parametrize("follow", [False, True])
def test_unicode_line_separators_in_a_log_are_shown_as_escapes(  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch, capsys, follow
) -> None:
    """U+2028/U+2029 passed as they were (noticed in log screen round 20): the screen judges a
    line up to its newline, but a pager, an editor or `str.splitlines` starts a new line there,
    so a reader could be shown one judged line as two. Failed before: the characters printed."""
    log = "epoch 1\u2028name Smith\u2029 loss 0.5\n".encode()
    client = FakeClient({"id": "j1", "state": "succeeded", "reason": "exited with code 0"}, log)
    monkeypatch.setattr(jobs_cli, "ApiClient", lambda: client)
    monkeypatch.setattr(jobs_cli.time, "sleep", lambda s: None)
    jobs_cli.logs("j1", follow=follow)
    out = capsys.readouterr().out
    assert "\u2028" not in out and "\u2029" not in out
    assert "epoch 1\\u2028name Smith\\u2029 loss 0.5" in out
    assert len(out.splitlines()) == len(out.split("\n")) - (1 if out.endswith("\n") else 0)
