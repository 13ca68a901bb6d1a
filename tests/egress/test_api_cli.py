"""`tre egress` against the real API served by uvicorn: request, vote, refusals, download."""

from __future__ import annotations

import hashlib
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.egress.test_workflow_support import LEAKY_CSV, LiveServer, seed_world, with_egress_routes
from tre.cli import egress as egress_cli_module
from tre.cli import output
from tre.cli.client import CliError
from tre.cli.egress import app as egress_cli
from tre.config import reset_settings_cache


@pytest.fixture
def live(app, esettings):  # type: ignore[no-untyped-def]
    with LiveServer(with_egress_routes(app)) as server:
        yield server


@pytest.fixture
def cli(live, monkeypatch, token_for):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRE_API_URL", live.url)

    def run(user: str, roles: tuple[str, ...], *args: str):  # type: ignore[no-untyped-def]
        monkeypatch.setenv("TRE_TOKEN", token_for(user, *roles))
        reset_settings_cache()
        return CliRunner().invoke(egress_cli, list(args))

    return run


WHY = " ".join(["Table 1 and Fig 3: counts of nodules by group, and one slice to show the montage"] * 3)


def test_cli_request_vote_download(cli, db, esettings, tmp_path, monkeypatch) -> None:
    with db.begin() as s:
        world = seed_world(s, esettings)
    me = (world.researcher, ("researcher",))
    r = cli(*me, "request", world.job_id, "tables/summary.csv", "dicom/slice.dcm", "--why", WHY)
    assert r.exit_code == 0, r.output
    rid = next(w for w in r.output.split() if len(w) == 32)
    assert "awaiting_review" in r.output and "InstitutionName" in r.output  # flagged reason shown

    early = cli(*me, "download", rid, "--dest", str(tmp_path / "early"), "--no-progress")
    assert early.exit_code == 1 and isinstance(early.exception, CliError)
    assert str(early.exception).startswith("Not released: ") and "after approval" in str(early.exception)
    assert not (tmp_path / "early" / "tables" / "summary.csv").exists()

    own = cli(world.researcher, ("researcher",), "vote", rid, "approve")
    assert isinstance(own.exception, CliError) and "Forbidden" in str(own.exception)

    listed = cli("dana", ("dac",), "list", "--state", "awaiting_review")
    assert listed.exit_code == 0 and rid in listed.output, listed.output
    assert listed.output.splitlines()[1].split("\t")[-2] == "vote"  # "yours": dana's vote is needed
    # Newcomer round 21: reviewers choose what to open by the justification. Piped: the last
    # column, whole; --json: the full field; on a terminal: one line, cut at its width.
    header, row = listed.output.splitlines()[:2]
    assert header.split("\t")[-1] == "justification" and row.split("\t")[-1] == WHY, listed.output
    as_json = json.loads(cli("dana", ("dac",), "list", "--json").output)
    assert [r["justification"] for r in as_json] == [WHY]
    piped = output.console
    terminal = Console(force_terminal=True, width=150, color_system=None)
    monkeypatch.setattr(output, "console", terminal)
    monkeypatch.setattr(egress_cli_module, "console", terminal)
    with terminal.capture() as shown:
        cli("dana", ("dac",), "list")
    with terminal.capture() as empty:  # an empty frame said nothing; now it says so
        cli("dana", ("dac",), "list", "--state", "rejected")
    assert empty.get().strip() == "Egress requests: none", empty.get()
    monkeypatch.setattr(output, "console", piped)
    monkeypatch.setattr(egress_cli_module, "console", piped)
    lines = shown.get().splitlines()
    assert max(len(line) for line in lines) == 150 and rid in shown.get(), shown.get()
    ours = next(line for line in lines if line.startswith(("│ " + rid[:8], "┃ " + rid[:8])))
    assert "Table 1 and" in ours and ours.rstrip(" │").endswith("…"), shown.get()
    assert cli("dana", ("dac",), "vote", rid, "approve", "-m", "ok").exit_code == 0
    voted = cli("dana", ("dac",), "list", "--state", "awaiting_review").output.splitlines()[1]
    assert voted.split("\t")[-2] == "-", voted  # voted: nothing more asked of her
    second = cli("dave", ("dac",), "vote", rid, "approve")
    assert second.exit_code == 0 and "approved" in second.output

    dest = tmp_path / "out"
    done = cli(*me, "download", rid, "--dest", str(dest))
    assert done.exit_code == 0, done.output
    assert "hashes verified" in done.output
    # Piped (as here), no progress bar is drawn into the output, and the record's path is
    # never cut in two at the console's width (a script reads it from the last line).
    assert "━" not in done.output and "bytes" not in done.output, done.output
    assert done.output.splitlines()[-1].endswith(f"disclosure record: {dest / f'disclosure-{rid}.json'}")
    assert (dest / "tables" / "summary.csv").read_bytes() == world.outputs["tables/summary.csv"]
    assert (dest / "dicom" / "slice.dcm").read_bytes() == world.outputs["dicom/slice.dcm"]
    assert not list(dest.rglob("*.part"))
    record = json.loads((dest / f"disclosure-{rid}.json").read_text())
    assert record["outcome"] == "approved" and len(record["files"]) == 2

    shown = cli(*me, "disclosure", rid, "--out", str(tmp_path / "d.json"))
    assert shown.exit_code == 0 and json.loads((tmp_path / "d.json").read_text())["request"]["id"] == rid
    # Newcomer round 23: with the digest the audit log holds and where an auditor finds it.
    digest = hashlib.sha256(
        json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert f"its SHA-256 (canonical JSON) is {digest}" in " ".join(shown.output.split()), shown.output
    assert f"--job {world.job_id} --action egress.released" in " ".join(shown.output.split())

    # Newcomer round 21: the vote that makes the votes disagree says who settles it and how
    # (it stopped at "state conflicted"), and a voter trying to settle it is told who may.
    again = cli(*me, "request", world.job_id, "dicom/slice.dcm", "--why", "the slice again")
    rid2 = next(w for w in again.output.split() if len(w) == 32)
    assert cli("dana", ("dac",), "vote", rid2, "approve").exit_code == 0
    split = cli("dave", ("dac",), "vote", rid2, "reject", "-m", "no")
    assert "state conflicted" in split.output and f"tre egress resolve {rid2} approve" in split.output
    assert "who did not vote, or an admin" in " ".join(split.output.split()), split.output
    shown = cli("dana", ("dac",), "show", rid2)  # and later, to a voter (newcomer round 23)
    assert f"who did not vote, or an admin, settles it with: tre egress resolve {rid2}" in " ".join(
        shown.output.split()
    ), shown.output
    own = cli("dave", ("dac",), "resolve", rid2, "reject", "-m", "no")
    assert own.exit_code == 1 and "who did not vote, or by an admin" in str(own.exception), own.output


def test_a_state_filter_takes_only_request_states(cli, live, token_for, db, esettings) -> None:  # type: ignore[no-untyped-def]
    """`tre egress list --state awaiting-review` (as the panel prints it) and the API's
    `?state=bogus` answered an empty list, as though nothing were in that state."""
    import httpx

    with db.begin() as s:
        seed_world(s, esettings)

    for bad in ("bogus", "awaiting-review"):
        r = httpx.get(
            f"{live.url}/api/v1/egress/requests",
            params={"state": bad},
            headers={"Authorization": f"Bearer {token_for('dana', 'dac')}"},
        )
        assert r.status_code == 422 and "awaiting_review" in r.json()["detail"], r.text
        shown = cli("dana", ("dac",), "list", "--state", bad)
        assert shown.exit_code == 2 and "awaiting_review" in shown.output, shown.output
    assert cli("dana", ("dac",), "list", "--state", "AWAITING_REVIEW").exit_code == 0


def test_cli_withdraw(cli, db, esettings) -> None:  # type: ignore[no-untyped-def]
    with db.begin() as s:
        world = seed_world(s, esettings)
    me = (world.researcher, ("researcher",))
    r = cli(*me, "request", world.job_id, "tables/summary.csv", "--why", "Table 1")
    rid = next(w for w in r.output.split() if len(w) == 32)
    other = cli("dana", ("dac",), "withdraw", rid[:8])
    assert other.exit_code == 1 and isinstance(other.exception, CliError)
    done = cli(*me, "withdraw", rid[:8], "-m", "wrong table")
    assert done.exit_code == 0 and f"request {rid} withdrawn" in done.output, done.output
    again = cli(*me, "withdraw", rid)
    assert again.exit_code == 1 and isinstance(again.exception, CliError)
    assert "only a request awaiting review or a resolution can be withdrawn" in str(again.exception)
    listed = cli(*me, "list", "--state", "withdrawn")
    assert listed.exit_code == 0 and rid[:8] in listed.output


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_blocked_request_exits_non_zero(cli, db, esettings, as_json: bool) -> None:
    """Blocked by the checks, the request can never be approved: `tre egress request ... &&
    next-step` went on (exit 0) with only a red line to tell. Failed before: exit code 0."""
    with db.begin() as s:
        world = seed_world(s, esettings, {"tables/patients.csv": LEAKY_CSV})
    args = ["request", world.job_id, "tables/patients.csv", "--why", "per-patient volumes"]
    r = cli(world.researcher, ("researcher",), *args, *(["--json"] if as_json else []))
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)  # no traceback
    if as_json:
        assert json.loads(r.stdout)["state"] == "blocked"
    else:
        assert "blocked" in r.stdout and "it cannot be approved" in r.stdout
        assert "follow it with: tre egress show" in r.stdout


def test_a_reviewer_reads_who_asked_why_and_their_own_vote(cli, db, esettings) -> None:  # type: ignore[no-untyped-def]
    """Round 20 (newcomer, the DAC member's README lines): `tre egress show REQ` printed the
    files and checks but not the justification the requester was told "the reviewers will
    read", nor who asked, nor the reviewer's own blind vote, so a DAC member reviewing from
    the CLI voted without the reason for the release."""
    with db.begin() as s:
        world = seed_world(s, esettings)
    made = cli(
        world.researcher, ("researcher",), "request", world.job_id, "tables/summary.csv", "--why", "Table 1"
    )
    rid = next(w for w in made.output.split() if len(w) == 32)

    before = cli("dana", ("dac",), "show", rid[:8])
    assert before.exit_code == 0, before.output
    assert f"requested by {world.researcher} at " in before.output
    assert "why: Table 1" in before.output
    assert f"your vote is needed: tre egress vote {rid} approve" in before.output

    assert cli("dana", ("dac",), "vote", rid, "reject", "-m", "cell of 3").exit_code == 0
    assert cli("dave", ("dac",), "show", rid).output.count("your vote is needed") == 1
    mine = cli("dana", ("dac",), "show", rid)
    assert "your vote: reject  cell of 3" in mine.output and "your vote is needed" not in mine.output
    # Still blind to the others: dave's view names no vote of dana's.
    assert "cell of 3" not in cli("dave", ("dac",), "show", rid).output
