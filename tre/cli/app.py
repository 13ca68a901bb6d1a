"""The `tre` command's Typer application: its groups and top-level commands.

The console script is `tre.cli.main:run`, which turns every failure into one line on stderr.
"""

from __future__ import annotations

import sys
import threading
from typing import Annotated, Any

import typer

from tre.auth.pasted import pasted_token
from tre.cli import (
    admin,
    audit,
    catalogue,
    code,
    egress,
    examples,
    federation,
    images,
    interrupts,
    jobs,
    preprocess,
    witness,
)
from tre.cli.client import (
    ApiClient,
    CliError,
    TokenRefused,
    checked_api_url,
    credentials_path,
    save_credentials,
)
from tre.cli.device_login import device_login, oidc_login_config
from tre.cli.output import JsonFlag, console, err_console, print_json, untrusted
from tre.config import get_settings

app = typer.Typer(
    help="tre: trusted research environment for cancer imaging.\n\n"
    "Commands are grouped by who uses them. Researchers list what their projects may use "
    "(`dataset list`, `grant list`, `image list --usable`); admins add datasets, grants and "
    "images with the same commands.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from tre import __version__

        console.print(f"tre {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """tre: trusted research environment for cancer imaging."""


# `tre --help` groups the commands by who uses them (rich help panels).
RESEARCHERS, REVIEWERS, AUDITORS, ADMINS = (
    "Researchers",
    "Airlock: researchers request and download, DAC members review (also the web panel)",
    "Auditors",
    "Admins",
)
jobs.register(app, panel=RESEARCHERS)
app.add_typer(code.job_app, name="job", rich_help_panel=RESEARCHERS)
app.command(rich_help_panel=RESEARCHERS)(preprocess.preprocess)
app.add_typer(admin.dataset_app, name="dataset", rich_help_panel=RESEARCHERS)
app.add_typer(admin.grant_app, name="grant", rich_help_panel=RESEARCHERS)
app.add_typer(images.app, name="image", rich_help_panel=RESEARCHERS)
app.add_typer(catalogue.app, name="catalogue", rich_help_panel=RESEARCHERS)
app.add_typer(egress.app, name="egress", rich_help_panel=REVIEWERS)
app.add_typer(audit.app, name="audit", rich_help_panel=AUDITORS)
app.add_typer(witness.app, name="witness", rich_help_panel=AUDITORS)
app.add_typer(admin.admin_app, name="admin", rich_help_panel=ADMINS)
app.add_typer(admin.project_app, name="project", rich_help_panel=ADMINS)
# Federation (docs/federation.md): the hub's operators and researchers, and a node's admin.
app.add_typer(federation.hub_app, name="hub", rich_help_panel=ADMINS)
app.add_typer(federation.node_app, name="node", rich_help_panel=ADMINS)


@app.command(rich_help_panel=RESEARCHERS)
def login(
    token: Annotated[
        str | None,
        typer.Option(help="Your JWT. Avoid: it stays in shell history; paste it at the prompt or pipe it."),
    ] = None,
    api_url: Annotated[str | None, typer.Option(help="API address (default: TRE_API_URL).")] = None,
    oidc: Annotated[
        bool,
        typer.Option(
            "--oidc",
            help="Sign in at the API's OpenID provider (device flow: open a link, type a code). "
            "The default on a terminal when the API has a provider.",
        ),
    ] = False,
) -> None:
    """Sign in and save the token for later commands.

    Where the API takes tokens from an OpenID provider, `tre login` (on a terminal) or
    `tre login --oidc` shows an address and a code to enter in any browser, and waits. Else
    the token is read from a hidden prompt, or from stdin when it is not a terminal
    (`tre login < token.txt`), so it never lands in shell history.
    """
    url = checked_api_url(api_url or get_settings().api_url)
    if token is None and (oidc or sys.stdin.isatty()):
        login_at = oidc_login_config(url)
        if login_at is not None:
            token = device_login(
                login_at, lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)
            )
            me = ApiClient(api_url=url, token=token).get("/api/v1/me")
            save_credentials(url, token, issuer=login_at.issuer)
            console.print(
                f"logged in to {url} as [bold]{untrusted(me['user_id'])}[/] ({', '.join(me['roles'])})"
            )
            return
        if oidc:
            raise CliError(
                f"the API at {url} has no OpenID provider; ask an admin for a token "
                "(`tre admin token`) and run `tre login`"
            )
    if token is not None:
        err_console.print(
            "warning: a token given with --token stays in your shell history; next time run "
            "`tre login` and paste it at the prompt",
            highlight=False,
        )
    elif sys.stdin.isatty():
        token = typer.prompt("Token", hide_input=True)
    else:
        token = sys.stdin.readline()
    token = pasted_token(token)  # as copied from a curl line or a quoted string, too
    if not token:
        raise CliError("no token given: paste it at the prompt or pipe it on stdin")
    me = ApiClient(api_url=url, token=token).get("/api/v1/me")
    save_credentials(url, token)
    console.print(f"logged in to {url} as [bold]{me['user_id']}[/] ({', '.join(me['roles'])})")


@app.command(rich_help_panel=RESEARCHERS)
def whoami(as_json: JsonFlag = False) -> None:
    """Show who the saved token belongs to."""
    me = ApiClient().get("/api/v1/me")
    if as_json:
        print_json(me)
        return
    console.print(f"{me['user_id']} roles={','.join(me['roles'])} projects={','.join(me['projects']) or '-'}")


def local_api_port(api_url: str, host: str) -> int | None:
    """The port of ``TRE_API_URL`` when it is plain HTTP to ``host`` or this machine's loopback:
    a newcomer who set ``TRE_API_URL=http://127.0.0.1:9000`` ran `tre serve` and every CLI
    command said the API could not be reached (it listened on 8765). A URL of another host (a
    proxy in front of the API) says nothing about where this process listens."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(api_url)
        port = url.port
    except ValueError:
        return None
    loopback = {"127.0.0.1", "localhost", "::1"}
    if url.scheme != "http" or port is None:
        return None
    if url.hostname == host or (url.hostname in loopback and host in loopback):
        return port
    return None


@app.command(rich_help_panel=ADMINS)
def serve(
    host: str = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="TCP port to listen on (default: TRE_API_URL's port when it names this host, else 8765).",
        ),
    ] = None,
    worker: Annotated[bool, typer.Option(help="Run the job worker in this process too.")] = True,
    node: Annotated[
        bool, typer.Option("--node", help="Also run the federation agent (after `tre node join`).")
    ] = False,
) -> None:
    """Run the API (and, for the embedded mode, the worker; with --node, the federation agent)."""
    from tre.listen import ensure_can_listen

    settings = get_settings()
    port = port or local_api_port(settings.api_url, host) or 8765
    ensure_can_listen(host, port, "tre serve")  # before the server's imports: a mistake answers at once
    if worker:
        from tre.executors.factory import check_executor_settings

        check_executor_settings(settings)  # so too a sandbox setting this host cannot honour
    from tre.server import serve as run_server

    # A state directory tre cannot use fails here, before the banner says the API is up.
    settings.ensure_dirs()
    interrupts.serve_until_stopped()
    parts = ["the job worker" if worker else "no worker", *(["the federation agent"] if node else [])]

    def banner() -> None:
        # Printed once the socket listens: a script that waits for this line and connects
        # is answered (it was printed before the app was built, and the connection refused).
        console.print(
            f"tre serve: API on http://{host}:{port} with {' and '.join(parts)}; state directory "
            f"{settings.home}; Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )

    run_server(host, port, with_worker=worker, node=node, on_server=_stop_on_signal, on_listening=banner)
    console.print("tre serve: stopped", highlight=False)


def _stop_on_signal(server: Any) -> None:
    """The first SIGINT/SIGTERM stops the API gracefully (uvicorn's ``should_exit``)."""
    interrupts.on_stop(lambda: setattr(server, "should_exit", True))


@app.command(rich_help_panel=ADMINS)
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs this worker runs at once.")] = 2,
) -> None:
    """Run the job worker: dispatch queued jobs to the configured executor (TRE_EXECUTOR).

    Says on one line, once the database is ready, what it runs and where, as `tre serve` does:
    a worker started in its own shell otherwise printed nothing until a job came."""
    from tre.executors.factory import check_executor_settings

    settings = get_settings()
    check_executor_settings(settings)  # before the imports below: a wrong setting answers at once
    from tre.jobs.worker import Worker
    from tre.store.db import init_db, make_engine

    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    from egress_review import expiry

    w = Worker(settings, engine, concurrency=concurrency, periodic=[expiry.sweeper(engine, settings)])
    interrupts.serve_until_stopped()
    console.print(
        f"tre worker: {settings.executor} executor, up to {concurrency} jobs at once; state directory "
        f"{settings.home}; Ctrl-C stops it",
        highlight=False,
        soft_wrap=True,
    )
    # The loop runs beside the main thread, which only waits for SIGINT/SIGTERM: a signal
    # never lands inside a scheduling round or a database call (tre.cli.interrupts).
    loop = threading.Thread(target=w.serve_forever, name="tre-worker", daemon=True)
    loop.start()
    while loop.is_alive() and not interrupts.stop_requested():
        loop.join(timeout=0.2)
    w.stop()
    loop.join()  # running jobs finish their round; a second signal ends the process at once
    console.print("tre worker: stopped", highlight=False)


@app.command(rich_help_panel=ADMINS)
def demo() -> None:
    """End-to-end demo on the embedded defaults (SQLite + local sandbox)."""
    from tre.demo import run_demo

    run_demo()


@app.command(rich_help_panel=RESEARCHERS)
def logout(
    api_url: Annotated[str | None, typer.Option(help="API address (default: the saved login's).")] = None,
) -> None:
    """Sign the saved token out at the API, then delete the saved login.

    The API refuses the token from then on, wherever a copy of it is; deleting the file alone
    would leave it valid until it expires. A token the API already refuses (expired, signed
    out) is simply forgotten; when the API cannot be reached the saved login is kept, so the
    sign-out can be retried.
    """
    path = credentials_path()
    try:
        ApiClient(api_url=api_url).post("/api/v1/auth/logout")
        said = "signed out: the token is refused from now on"
    except TokenRefused:
        said = "the token was no longer valid"
    if path.exists():
        path.unlink()
        said += f"; removed {path}"
    console.print(said, highlight=False, soft_wrap=True)


# Last, once every command is registered: the example at the foot of each command's --help.
examples.attach(app)
