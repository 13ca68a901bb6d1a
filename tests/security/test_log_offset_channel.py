"""The log's offsets are a channel of their own (redteam13).

A researcher's log read answered ``X-Next-Offset`` in bytes of the *raw* log, and took an
``offset`` in raw bytes too: under ``status_only`` the header was the raw log's exact size
(re-read while the job ran, a live counter the job drives: it appends bytes, the researcher
polls); past the per-job limit and past the project's daily budget likewise; and a withheld
line's raw length was readable from the header, or by probing offsets (a line is shown from
an offset only if it starts at or after it). Now a researcher's offsets count bytes of what
they are shown (the screened lines and notices), so two jobs whose logs differ only in what
is withheld answer every read alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.security.test_log_channel import NAME, _policy, _write_log

REPO = Path(__file__).resolve().parents[2]
PROBES = (0, 1, 5, 9, 10, 11, 17, 30, 31, 40, 64, 100, 128, 200, 300, 1000, 5000, 100_000)


def _answers(app_client: Any, headers: dict[str, str], job_id: str) -> list[tuple[int, str, str]]:
    """What a researcher can read of a log: every probed offset's body and next offset."""
    out = []
    for offset in PROBES:
        r = app_client.get(f"/api/v1/jobs/{job_id}/logs?offset={offset}", headers=headers)
        assert r.status_code == 200, r.text
        out.append((offset, r.text, r.headers["X-Next-Offset"]))
    return out


def _follow(app_client: Any, headers: dict[str, str], job_id: str) -> str:
    """Read the log as `tre logs -f` does: from each answer's next offset, until it stops moving."""
    offset, text = 0, ""
    for _ in range(50):
        r = app_client.get(f"/api/v1/jobs/{job_id}/logs?offset={offset}", headers=headers)
        text += r.text
        following = int(r.headers["X-Next-Offset"])
        if following == offset and not r.text:
            return text
        offset = following
    raise AssertionError("the follower never settled")


def test_status_only_tells_nothing_of_the_logs_size(app_client, world, engine, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _policy(settings, engine, tmp_path, log_visibility="status_only")
    alice = world.headers["alice"]
    small = _write_log(settings, engine, "p1", "a\n")
    large = _write_log(settings, engine, "p1", "b" * 70 + "\n" + "c\n" * 20_000)
    empty = _write_log(settings, engine, "p1", "")
    seen = _answers(app_client, alice, small)
    assert seen == _answers(app_client, alice, large) == _answers(app_client, alice, empty)
    assert "withholds job logs" in seen[0][1]
    assert _follow(app_client, alice, large) == seen[0][1]


def test_a_withheld_lines_length_is_not_readable(app_client, world, engine, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two logs that differ only in the raw length of withheld lines read alike, from any offset."""
    _policy(settings, engine, tmp_path, log_visibility="screened")
    alice = world.headers["alice"]

    def log(pad: int) -> str:
        return f"start\nname {NAME} {'x' * pad}\nmiddle\nagain {NAME}{'y' * pad}\nend\n"

    short, long_ = _write_log(settings, engine, "p1", log(1)), _write_log(settings, engine, "p1", log(40))
    staff = world.headers["audrey"]
    assert NAME in app_client.get(f"/api/v1/jobs/{long_}/logs", headers=staff).text  # the test bites
    seen = _answers(app_client, alice, short)
    assert seen == _answers(app_client, alice, long_)
    whole = seen[0][1]
    assert whole.startswith("start\n[tre] withheld") and "middle\n" in whole and whole.endswith("end\n")
    assert NAME not in whole
    assert _follow(app_client, alice, short) == whole == _follow(app_client, alice, long_)


def test_nothing_past_the_job_limit_moves_an_offset(app_client, world, engine, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _policy(settings, engine, tmp_path, log_visibility="screened", researcher_log_limit_kib=1)
    alice = world.headers["alice"]
    head = "".join(f"step {i:04d} fine\n" for i in range(64))  # 960 bytes: within the 1 KiB limit
    a = _write_log(settings, engine, "p1", head + "step tail\n" * 10)
    b = _write_log(settings, engine, "p1", head + "step tail\n" * 5_000)
    seen = _answers(app_client, alice, a)
    assert seen == _answers(app_client, alice, b)
    assert "the rest of this log is withheld" in seen[0][1]
    assert _follow(app_client, alice, b) == seen[0][1]  # the notice once, then nothing


def test_nothing_past_the_daily_budget_moves_an_offset(app_client, world, engine, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _policy(settings, engine, tmp_path, log_visibility="screened", researcher_log_project_daily_kib=1)
    alice = world.headers["alice"]
    spent = _write_log(settings, engine, "p1", "".join(f"step {i:04d} fine\n" for i in range(200)))
    assert "daily budget" in app_client.get(f"/api/v1/jobs/{spent}/logs", headers=alice).text
    a = _write_log(settings, engine, "p1", "step one\n" * 3)
    b = _write_log(settings, engine, "p1", "step one\n" * 3000)
    seen = _answers(app_client, alice, a)
    assert seen == _answers(app_client, alice, b)
    assert "daily budget" in seen[0][1] and "step one" not in seen[0][1]


def test_a_follower_sees_each_line_once(app_client, world, engine, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tre.jobs.paths import log_path

    _policy(settings, engine, tmp_path, log_visibility="screened")
    alice = world.headers["alice"]
    job = _write_log(settings, engine, "p1", "one\n")
    r = app_client.get(f"/api/v1/jobs/{job}/logs", headers=alice)
    assert r.text == "one\n" and r.headers["X-Next-Offset"] == "1"  # lines of the view
    with log_path(settings, job).open("a") as fh:
        fh.write(f"two {NAME}\nthree\n")
    r = app_client.get(f"/api/v1/jobs/{job}/logs?offset=1", headers=alice)
    assert r.text.startswith("[tre] withheld") and r.text.endswith("\nthree\n")
    assert r.headers["X-Next-Offset"] == "3"
    again = app_client.get(f"/api/v1/jobs/{job}/logs?offset=3", headers=alice)
    assert again.text == "" and again.headers["X-Next-Offset"] == "3"
    # Staff offsets stay raw bytes: they read the log itself.
    staff = app_client.get(f"/api/v1/jobs/{job}/logs?offset=4", headers=world.headers["audrey"])
    assert staff.text == f"two {NAME}\nthree\n"


def test_a_labelled_part_waits_for_the_lines_that_could_finish_it() -> None:
    """A follower read "MRN part 1: 0048" as soon as it was written; once "part 2: 213" came
    both lines were withheld, too late. A possible first part now waits for the lines that
    could hold the next one, and a follower's offset (lines) reaches every later line once."""
    from egress_review.joblog import ResearcherView
    from egress_review.logscreen import LogScreen
    from tre.policy import load_policy

    policy = load_policy("default", REPO / "policies")
    screen = LogScreen.for_policies([policy], {"MRN-0048213"})

    def view(log: bytes, offset: int = 0, final: bool = False) -> tuple[bytes, int]:
        return ResearcherView(screen.screen_log(log, final)).read(offset, len(log), b"")

    early = b"start\nMRN part 1: 0048\n"
    shown, offset = view(early)
    assert shown == b"start\n" and offset == 1  # the first part waits
    # (each later line ends with a letter no form of the MRN begins with: a running log's last
    # line ending with an identifier's start waits for the next, redteam14)
    grown = early + b"MRN part 2: 213\n" + b"".join(b"later %d ok\n" % i for i in range(5))
    rest, following = view(grown, offset)
    assert b"part 1" not in rest and b"part 2" not in rest and b"0048" not in rest
    assert rest.decode().splitlines()[2:] == [f"later {i} ok" for i in range(5)] and following == 8
    # A first part whose chain breaks (no next part within three lines) is shown then.
    honest = b"epoch 1 part 1: 0048\n" + b"loss 0.5\n" * 4
    assert view(honest)[0] == honest
    # A job that ended is judged whole: nothing waits.
    assert view(early, final=True)[0] == early
    # Joined across a line break, the same.
    wrapped, _ = view(b"id MRN-00\n")
    assert wrapped == b""
