"""Researcher commands: submit (with --wait), jobs, logs, outputs, cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from tre.cli import interrupts
from tre.cli.client import ApiClient, CliError, TokenRefused
from tre.cli.code import upload_code
from tre.cli.interrupts import Interrupted
from tre.cli.logview import LogView
from tre.cli.output import JsonFlag, console, err_console, human_size, print_json, table, untrusted, utc_time
from tre.cli.resolve import resolve_image_ref, resolve_input_job, resolve_job_id
from tre.states import JobState

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def reattach_hint(job_id: str) -> str:
    return f"job {job_id} keeps running on the server; follow it again with: tre logs {job_id} -f"


@contextmanager
def reattach_on_interrupt(job_id: str) -> Iterator[None]:
    """Around everything a command does once a job exists: an expired token or Ctrl-C ends
    in one line that says the job continues and how to follow it again (exit 1 or 130)."""
    try:
        yield
    except TokenRefused as exc:
        raise CliError(f"{exc}. {reattach_hint(job_id)}") from exc
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {reattach_hint(job_id)}") from None


NOTHING_SUBMITTED = "interrupted before the job was submitted: no job was made; run the command again"


@contextmanager
def nothing_submitted_on_interrupt() -> Iterator[None]:
    """Around what a command does before it asks for its job (admission's check, packing
    and uploading the code, reading the quota): Ctrl-C there says no job was made.

    Why: a researcher who pressed Ctrl-C during a long code upload read only 'error:
    interrupted' and could not tell whether a job had started without them (newcomer
    round 22). The job's own request is left out: its answer may be lost after the server
    made the job, so an interrupt there cannot say no job exists."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(NOTHING_SUBMITTED) from None


def follow_or_explain(client: ApiClient, job_id: str, show_logs: bool = True) -> dict:
    """`follow_job` inside `reattach_on_interrupt`."""
    with reattach_on_interrupt(job_id):
        return follow_job(client, job_id, show_logs=show_logs)


LOG_TYPES = ("text/plain",)  # what the API serves a job's log as; a proxy's HTML page is refused


def shown_state(state: str, end_pending: str | None) -> str:
    """The state a follower is shown: a running job whose end waits for the database is
    "ending" (as `tre job show` says), not "running"."""
    return "ending" if state == "running" and end_pending == "true" else state


def follow_job(client: ApiClient, job_id: str, show_logs: bool = True, poll_s: float = 0.5) -> dict:
    """Stream the job's log while a spinner shows its state (and, for a cohort job, a
    progress bar: `tre.cli.logview`); return the final job record."""
    offset = 0
    with LogView(console, job_id, spinner=True) as view:
        view.state("queued")
        while True:
            resp = client.request(
                "GET", f"/api/v1/jobs/{job_id}/logs", expect=LOG_TYPES, params={"offset": offset}
            )
            offset = int(resp.headers.get("X-Next-Offset", offset))
            state = resp.headers.get("X-Job-State", "")
            if show_logs and resp.content:
                view.feed(resp.content.decode("utf-8", "replace"))
            view.state(shown_state(state, resp.headers.get("X-Job-End-Pending")))
            if state in TERMINAL and not resp.content:
                break
            interrupts.check()  # a Ctrl-C that a library caught still ends the loop
            time.sleep(poll_s)
    job: dict = client.get(f"/api/v1/jobs/{job_id}")
    return job


def submit(
    project: Annotated[str, typer.Option("--project", "-p", help="Project the job runs for.")],
    image: Annotated[
        str,
        typer.Option(
            help="Job image pinned by digest (name@sha256:HEX), or a unique prefix of the digest of "
            "one you can see (`tre image list --usable -p PROJECT`)."
        ),
    ],
    command: Annotated[
        list[str],
        typer.Argument(
            metavar="-- COMMAND", help="Command and arguments run inside the sandbox, after `--`."
        ),
    ],
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", "-d", help="Dataset id (repeatable).")
    ] = None,
    cpu: float = 1.0,
    memory_mb: Annotated[int, typer.Option("--memory-mb")] = 1024,
    gpu: int = 0,
    time_limit: Annotated[int, typer.Option("--time-limit", help="Wall-clock limit, seconds.")] = 600,
    output_limit_mb: Annotated[int, typer.Option("--output-limit-mb")] = 256,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job's log until it ends.")] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the job record as JSON (with --wait: the final one, and no log)."),
    ] = False,
    code: Annotated[
        Path | None,
        typer.Option(
            "--code",
            help="Your code: a folder (packed as one tar.gz) or a .tar.gz; read-only at /code, "
            "the job's working directory.",
        ),
    ] = None,
    input_job: Annotated[
        list[str] | None,
        typer.Option(
            "--input-job",
            help="An earlier succeeded job of the project whose outputs this job reads, read-only "
            "at /inputs/<its id> (repeatable; any unique prefix of the id).",
        ),
    ] = None,
) -> None:
    """Submit a job to run next to the data.

    Put the job's command after `--`, so that its own options are not read as tre's; with
    `--code .` the current folder is the job's working directory (/code):

        tre submit -p p1 -d ct1 --image IMAGE@sha256:... --code . --wait -- python3 run.py --fast
    """
    client = ApiClient()
    request = {
        "project_id": project,
        "image": resolve_image_ref(client, image),
        "command": command,
        "dataset_ids": dataset or [],
        "cpu": cpu,
        "memory_mb": memory_mb,
        "gpu": gpu,
        "time_limit_s": time_limit,
        "output_limit_mb": output_limit_mb,
        "input_job_ids": [resolve_input_job(client, given) for given in input_job or []],
    }
    code_hash = None
    if code is not None:
        # Admission first: a mistyped dataset or project is refused before the code is packed
        # and uploaded (up to the project's code quota), not after.
        with nothing_submitted_on_interrupt():
            client.post("/api/v1/jobs/check", json=request)
            code_hash = upload_code(client, project, code, announce=not as_json)
    job = client.post("/api/v1/jobs", json={**request, "code_hash": code_hash})
    if as_json and not wait:
        print_json(job)
        return
    with reattach_on_interrupt(job["id"]):  # from the moment the job exists
        if not as_json:
            console.print(f"submitted job [bold]{job['id']}[/] ({job['state']})")
        if not wait:
            return
        final = follow_job(client, job["id"], show_logs=not as_json)
    if as_json:
        print_json(final)
    else:
        _print_end(final)
    if final["state"] != "succeeded":
        raise typer.Exit(1)


def _print_end(job: dict) -> None:
    colour = "green" if job["state"] == "succeeded" else "red"
    reason = f": {untrusted(job['reason'])}" if job["reason"] else ""
    console.print(f"job {job['id']} [{colour}]{job['state']}[/]{reason}")


def jobs(
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    state: Annotated[JobState | None, typer.Option(case_sensitive=False)] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Jobs per page (newest first).")] = 100,
    page: Annotated[int, typer.Option(min=1, help="Which page: 2 shows the next --limit jobs.")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """List jobs you can see, newest first."""
    params: dict[str, str | int] = {"limit": limit, "offset": (page - 1) * limit}
    if project:
        params["project_id"] = project
    if state:
        params["state"] = state.value
    rows = ApiClient().get("/api/v1/jobs", params=params)
    if as_json:
        print_json(rows)
        return
    table(
        "jobs",
        ["id", "project", "by", "state", "code", "created", "reason"],
        [
            (
                j["id"],
                j["project_id"],
                j["submitted_by"],
                "ending" if j.get("end_pending") else j["state"],
                (j.get("code_hash") or "-")[:12],
                utc_time(j["created_at"]),
                j["reason"][:60],
            )
            for j in rows
        ],
    )


def logs(job_id: str, follow: Annotated[bool, typer.Option("--follow", "-f")] = False) -> None:
    """Print a job's log (optionally follow it until the job ends). JOB_ID may be any
    unique prefix of the id. A cohort job's progress lines show as a progress bar on a
    terminal; piped, the log is printed as plain lines."""
    client = ApiClient()
    job_id = resolve_job_id(client, job_id)
    if follow:
        _print_end(follow_or_explain(client, job_id))
        return
    text = client.text(f"/api/v1/jobs/{job_id}/logs")
    with LogView(console, job_id) as view:
        view.feed(text)


OUTPUTS_PAGE = 100


def outputs(
    job_id: str,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Outputs per page.")] = OUTPUTS_PAGE,
    page: Annotated[int, typer.Option(min=1, help="Which page: 2 shows the next --limit outputs.")] = 1,
    show_all: Annotated[bool, typer.Option("--all", help="Every output, page after page.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List a job's output files with index, size and SHA-256, a page at a time (a cohort job
    has tens of thousands). A name the dataset's policy withholds shows as "(withheld)": ask
    for release of that file as #INDEX or sha256:HEX. Sizes are rounded up for researchers
    ("≤ 1.3 MB") until a file is released, and researchers see a keyed handle in place of each
    SHA-256 (the column reads "handle"): name a file by it as sha256:HANDLE."""
    client = ApiClient()
    job_id = resolve_job_id(client, job_id)
    offset = 0 if show_all else (page - 1) * limit
    rows: list[dict[str, object]] = []
    total = 0
    while True:
        got, headers = client.get_page(
            f"/api/v1/jobs/{job_id}/outputs", params={"limit": 1000 if show_all else limit, "offset": offset}
        )
        rows.extend(got)
        total = int(headers.get("X-Total-Count", len(rows)))
        following = headers.get("X-Next-Offset")
        if not show_all or following is None:
            break
        offset = int(following)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"job {job_id} has no outputs" if total == 0 else f"job {job_id} has {total} outputs")
        return
    table(
        f"outputs of {job_id}",
        ["#", "path", "size", "handle" if any(o.get("sha256_keyed") for o in rows) else "sha256"],
        [
            (
                f"#{o['index']}",
                o["path"] if o.get("path") is not None else "(withheld)",
                ("≤ " if o.get("size_rounded") else "") + human_size(int(str(o["size"]))),
                o["sha256"],
            )
            for o in rows
        ],
    )
    if len(rows) < total:
        first, last = rows[0]["index"], rows[-1]["index"]
        more = f"; --page {page + 1} for the next {limit}" if int(str(last)) + 1 < total else ""
        err_console.print(f"outputs #{first}-#{last} of {total}{more} (--all for every one)")


def cancel(job_id: str) -> None:
    """Cancel a queued or running job (JOB_ID may be any unique prefix)."""
    client = ApiClient()
    job_id = resolve_job_id(client, job_id)
    job = client.post(f"/api/v1/jobs/{job_id}/cancel")
    console.print(f"job {job_id}: cancel requested ({job['state']})")


def register(app: typer.Typer, panel: str | None = None) -> None:
    for fn in (submit, jobs, logs, outputs, cancel):
        app.command(rich_help_panel=panel)(fn)


__all__ = ["register", "follow_job", "resolve_job_id", "CliError"]
