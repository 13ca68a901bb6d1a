"""`tre egress`: ask for outputs to leave, follow the review, download what was released.

Downloads are verified twice: the server re-hashes the staged copy before sending it, and the
CLI hashes what it receives against the hash the request is bound to, keeping a file only
when both agree (written under a temporary name, renamed at the end).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from tre.cli.client import ApiClient, CliError
from tre.cli.output import JsonFlag, console, human_size, print_json, table, untrusted, utc_time
from tre.cli.resolve import resolve_job_id, resolve_request_id
from tre.plural import agree, count
from tre.states import EgressState

app = typer.Typer(
    help="Egress airlock: request release of job outputs, review, download.", no_args_is_help=True
)

BASE = "/api/v1/egress/requests"
# Asking for release waits for the checks (copying, hashing, OCR of every figure): seconds per
# image, so a request for a dozen figures outlasted the client's usual 30 s while the server
# carried on (the researcher saw "timed out" for a request that was then opened).
CHECKS_TIMEOUT_S = 900.0
OUTCOME_STYLE = {"pass": "green", "flag": "yellow", "block": "red"}


def _print_request(r: dict[str, Any]) -> None:
    console.print(
        f"[bold]Request {r['id']}[/bold]  state: [bold]{r['state']}[/bold]  "
        f"job {r['job_id']}  project {r['project_id']}"
    )
    # What a reviewer judges the request by, as the panel shows it: who asked, when, and why
    # (the --why the requester was told "the reviewers will read").
    if r.get("requested_by"):
        console.print(
            f"requested by {untrusted(r['requested_by'])} at {utc_time(r.get('created_at') or '')}",
            highlight=False,
        )
    if r.get("justification") is not None:
        console.print(f"why: {untrusted(r['justification'])}", soft_wrap=True, highlight=False)
    pols = ", ".join(f"{p['name']} v{p['version']}" for p in r.get("policies", []))
    console.print(f"policies: {pols or '-'}   votes: {r['votes_in']}/{r['required_reviews']}")
    mine = r.get("my_vote")
    if mine and not r.get("votes_revealed"):  # blind: a reviewer sees only their own vote
        console.print(f"your vote: {mine['vote']}  {untrusted(mine.get('comment') or '')}", highlight=False)
    elif r.get("can_vote"):
        console.print(
            f"your vote is needed: tre egress vote {r['id']} approve (or reject) -m WHY", highlight=False
        )
    elif r.get("can_resolve"):
        console.print(
            f"the votes disagree; settle it: tre egress resolve {r['id']} approve (or reject) -m WHY",
            highlight=False,
        )
    elif r.get("state") == EgressState.conflicted.value:  # a voter: who may (newcomer round 23)
        console.print(who_settles(r["id"]), highlight=False, soft_wrap=True)
    if r.get("expires_at"):
        console.print(f"expires: {utc_time(r['expires_at'])} unless decided first", highlight=False)
    # Fixed words from the server (quorum unmeetable, policy changed, expired), said first.
    for notice in r.get("notices", []):
        console.print(
            f"[bold yellow]note:[/bold yellow] {untrusted(notice)}", soft_wrap=True, highlight=False
        )
    for f in r.get("files", []):
        style = OUTCOME_STYLE.get(f["outcome"], "white")
        console.print(  # the whole hash: `egress request JOB sha256:HEX` takes it as printed
            f"  [{style}]{f['outcome']:5}[/{style}] {untrusted(f['path'])}  "
            f"{'≤ ' if f.get('size_rounded') else ''}{human_size(f['size'])}  "
            f"sha256:{f['sha256']}" + (" (keyed handle)" if f.get("sha256_keyed") else ""),
            soft_wrap=True,
        )
        for c in f.get("checks", []):
            if c["outcome"] != "pass":
                cs = OUTCOME_STYLE.get(c["outcome"], "white")
                console.print(
                    f"        [{cs}]{c['outcome']}[/{cs}] {untrusted(c['check'])}: {untrusted(c['reason'])}",
                    highlight=False,
                )
    if r.get("votes_revealed"):
        for v in r.get("votes", []):
            comment = untrusted(v["comment"])
            console.print(f"  vote by {v['reviewer']}: {v['vote']}  {comment}", highlight=False)
    if r.get("resolution"):
        res = r["resolution"]
        console.print(
            f"  resolved by {res['reviewer']}: {res['vote']}  {untrusted(res['comment'])}", highlight=False
        )


@app.command("request")
def request(
    job_id: Annotated[str, typer.Argument(help="A succeeded job of one of your projects.")],
    files: Annotated[
        list[str],
        typer.Argument(help="Output paths (or #INDEX / sha256:HEX), as `tre outputs JOB` lists them."),
    ],
    why: Annotated[str, typer.Option("--why", help="Justification the reviewers will read.")],
    as_json: JsonFlag = False,
) -> None:
    """Ask for release of FILE... of JOB (any unique prefix of its id); they are frozen and
    checked at once."""
    client = ApiClient()
    r = client.post(
        BASE,
        json={"job_id": resolve_job_id(client, job_id), "files": files, "justification": why},
        timeout=CHECKS_TIMEOUT_S,
    )
    if as_json:
        print_json(r)
    else:
        _print_request(r)
        console.print(f"follow it with: tre egress show {r['id']}", highlight=False, soft_wrap=True)
    if r["state"] == "blocked":
        # Non-zero, as `tre submit --wait` for a job that failed: a script (or `&&`) must not
        # go on as if the files were on their way to the committee. The request exists (for
        # the record and for `tre egress show`); it can never be approved.
        if not as_json:
            console.print("[red]The automated checks blocked this request; it cannot be approved.[/red]")
        raise typer.Exit(1)


@app.command("list")
def list_(
    state: Annotated[
        EgressState | None, typer.Option(case_sensitive=False, help="Only requests in this state.")
    ] = None,
    expiring: Annotated[
        float | None,
        typer.Option(
            "--expiring",
            min=0,
            max=3650,
            metavar="DAYS",
            help="Only open requests that expire within DAYS days, soonest first.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Requests you can see (your projects'; your committees' for reviewers; all for admins
    and auditors). Open requests show when they expire (TRE_EGRESS_OPEN_TTL_DAYS)."""
    params: dict[str, str] = {"state": state.value} if state else {}
    if expiring is not None:
        params["expiring_within_days"] = str(expiring)
    rows = ApiClient().get(BASE, params=params)
    if as_json:
        print_json(rows)
        return
    table(
        "Egress requests" + (f" expiring within {expiring:g} days" if expiring is not None else ""),
        # The justification last: piped, the columns before it keep their places for `cut -f`.
        ["id", "project", "by", "files", "checks", "state", "votes", "expires", "yours", "justification"],
        [
            (
                r["id"],
                r["project_id"],
                r["requested_by"],
                r["file_count"],
                r["outcome"],
                r["state"],
                f"{r['votes_in']}/{r['required_reviews']}",
                utc_time(r["expires_at"]) if r.get("expires_at") else "-",
                # What the caller is asked to do, as the panel's "your vote needed": every
                # awaiting request looked alike, voted on or not (newcomer round 21).
                "vote" if r.get("can_vote") else "resolve" if r.get("can_resolve") else "-",
                r.get("justification") or "",
            )
            for r in rows
        ],
        clipped=("justification",),
    )


@app.command()
def show(request_id: str, as_json: JsonFlag = False) -> None:
    """One request: files, check results, and (once all are in) the votes. REQUEST_ID may
    be any unique prefix of the id."""
    client = ApiClient()
    r = client.get(f"{BASE}/{resolve_request_id(client, request_id)}")
    if as_json:
        print_json(r)
        return
    _print_request(r)


def _decision(value: str) -> str:
    """Checked here, before the request is looked up: a usage mistake, not a server's answer."""
    if value not in ("approve", "reject"):
        raise typer.BadParameter(f"{value!r} is neither approve nor reject")
    return value


@app.command()
def vote(
    request_id: str,
    decision: Annotated[str, typer.Argument(help="approve or reject", callback=_decision)],
    comment: Annotated[str, typer.Option("--comment", "-m")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Cast your blind vote (role dac). REQUEST_ID may be any unique prefix of the id."""
    client = ApiClient()
    request_id = resolve_request_id(client, request_id)
    r = client.post(f"{BASE}/{request_id}/votes", json={"vote": decision, "comment": comment})
    if as_json:
        print_json(r)
        return
    console.print(f"vote recorded; {r['votes_in']}/{r['required_reviews']} votes in; state {r['state']}")
    if r["state"] == EgressState.conflicted.value:
        # The vote that made the votes disagree: who settles it and how (the panel said so,
        # the CLI stopped at "state conflicted"; the voter may not resolve it themselves).
        console.print(who_settles(r["id"]), highlight=False, soft_wrap=True)


def who_settles(request_id: str) -> str:
    """Who may settle a conflicted request, and how: said to the voters, who may not."""
    return (
        "the votes disagree: a DAC member of its committee who did not vote, or an admin, "
        f"settles it with: tre egress resolve {request_id} approve (or reject) -m WHY"
    )


@app.command()
def resolve(
    request_id: str,
    decision: Annotated[str, typer.Argument(help="approve or reject", callback=_decision)],
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (required).")],
    as_json: JsonFlag = False,
) -> None:
    """Settle a conflicted request (a DAC member who did not vote, or an admin). REQUEST_ID
    may be any unique prefix of the id."""
    client = ApiClient()
    request_id = resolve_request_id(client, request_id)
    r = client.post(f"{BASE}/{request_id}/resolution", json={"decision": decision, "comment": comment})
    if as_json:
        print_json(r)
        return
    console.print(f"resolution recorded; state {r['state']}")


@app.command()
def withdraw(
    request_id: str,
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why (shown to the reviewers).")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Withdraw your own open request (awaiting review or a resolution): final, nothing is
    released. REQUEST_ID may be any unique prefix of the id."""
    client = ApiClient()
    request_id = resolve_request_id(client, request_id)
    r = client.post(f"{BASE}/{request_id}/withdrawal", json={"reason": reason})
    if as_json:
        print_json(r)
        return
    console.print(f"request {r['id']} withdrawn; nothing will be released")


@app.command()
def disclosure(
    request_id: str,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file (its folder is created).")
    ] = None,
) -> None:
    """The machine-readable disclosure record (JSON) of a decided request (REQUEST_ID: any
    unique prefix)."""
    client = ApiClient()
    record = client.get(f"{BASE}/{resolve_request_id(client, request_id)}/disclosure")
    if out is None:
        print_json(record)
        return
    write_text_file(out, json.dumps(record, indent=2, sort_keys=True) + "\n")
    console.print(f"wrote {out}; {_record_check(record)}", highlight=False, soft_wrap=True, markup=False)


def _record_check(record: dict[str, Any]) -> str:
    """How an auditor proves the record is the one written at the decision: its SHA-256 over
    canonical JSON, which the request's egress.released / egress.closed audit entry holds
    (newcomer round 23: the command said only "wrote FILE", and the auditor had to rebuild the
    canonical form by hand to compare it)."""
    from egress_review.disclosure import record_digest

    action = "egress.released" if record.get("released") else "egress.closed"
    job = (record.get("request") or {}).get("job_id") or "JOB"
    return (
        f"its SHA-256 (canonical JSON) is {record_digest(record)}: the disclosure_sha256 of its "
        f"{action} audit entry (tre audit search --job {job} --action {action} --json)"
    )


def write_text_file(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (temporary name, then rename), creating its folder;
    a folder that cannot be made or written is one line, never a traceback."""
    part = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part.write_text(text)
        part.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _target(dest: Path, rel: str) -> Path:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise CliError(f"refusing to write outside {dest}: {rel!r}")
    return dest.joinpath(*p.parts)


def _fetch(
    client: ApiClient, url: str, target: Path, sha256: str, progress: Progress, task: Any, overall: Any
) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the folder {target.parent}: {exc.strerror or exc}") from exc
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with part.open("wb") as fh:
            for chunk in client.stream(url, expect=("application/octet-stream",)):
                fh.write(chunk)
                digest.update(chunk)
                progress.update(task, advance=len(chunk))
                progress.update(overall, advance=len(chunk))
        if digest.hexdigest() != sha256:
            raise CliError(
                f"{target.name}: received bytes hash to {digest.hexdigest()}, "
                f"not the released {sha256}; the file was discarded"
            )
        part.replace(target)
    except OSError as exc:  # unwritable folder, full disk, a folder where the file goes
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)


@app.command()
def download(
    request_id: str,
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Folder to write into.")] = Path("."),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")] = False,
) -> None:
    """Download the released files of an approved request, plus its disclosure record.

    Checks the request's state and the destination before drawing anything: an unapproved
    request, or a file that already exists (without --force), stops with one line."""
    client = ApiClient()
    request_id = resolve_request_id(client, request_id)
    r = client.get(f"{BASE}/{request_id}")
    if r["state"] != "approved":
        raise CliError(
            f"Not released: request {request_id} is {r['state']}; files can be downloaded only after approval"
        )
    dest = dest.resolve()
    files = r["files"]
    total = sum(f["size"] for f in files)
    targets = [_target(dest, f["path"]) for f in files] + [dest / f"disclosure-{request_id}.json"]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise CliError(
            f"{count(len(existing), 'file')} already {agree(len(existing), 'exists', 'exist')} "
            f"(first: {existing[0]}); use --force to overwrite "
            "or --dest to choose another folder"
        )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        disable=not progress or not console.is_terminal,  # piped: no bar drawn into the output
    ) as bar:
        overall = bar.add_task(f"request {request_id[:12]}", total=total)
        for f in files:
            task = bar.add_task(f"  {untrusted(f['path'])}", total=f["size"])
            _fetch(
                client,
                f"{BASE}/{request_id}/files/{f['id']}",
                _target(dest, f["path"]),
                f["sha256"],
                bar,
                task,
                overall,
            )
    record = client.get(f"{BASE}/{request_id}/disclosure")
    record_path = dest / f"disclosure-{request_id}.json"
    write_text_file(record_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    console.print(
        f"downloaded {count(len(files), 'file')}, {human_size(total)}, hashes verified; "
        f"disclosure record: {record_path}",
        soft_wrap=True,  # a path is never cut in two, on a terminal or piped
        highlight=False,
        markup=False,
    )
