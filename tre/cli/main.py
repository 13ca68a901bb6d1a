"""Entry point of the `tre` command. Every error ends as one line on stderr, exit 1."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tre.cli import admin, audit, code, egress, images, jobs, preprocess, witness
from tre.cli.client import ApiClient, CliError, save_credentials
from tre.cli.output import console, err_console
from tre.config import get_settings
from tre.errors import TreError

app = typer.Typer(
    help="tre: trusted research environment for cancer imaging.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
jobs.register(app)
app.add_typer(code.job_app, name="job")
app.add_typer(admin.admin_app, name="admin")
app.add_typer(admin.project_app, name="project")
app.add_typer(admin.dataset_app, name="dataset")
app.add_typer(admin.grant_app, name="grant")
app.add_typer(egress.app, name="egress")
app.add_typer(audit.app, name="audit")
app.add_typer(images.app, name="image")
app.add_typer(witness.app, name="witness")
app.command()(preprocess.preprocess)


@app.command()
def login(
    token: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Your JWT.")],
    api_url: Annotated[str | None, typer.Option(help="API address.")] = None,
) -> None:
    """Check a token against the API and save it for later commands."""
    url = api_url or get_settings().api_url
    me = ApiClient(api_url=url, token=token).get("/api/v1/me")
    save_credentials(url, token)
    console.print(f"logged in to {url} as [bold]{me['user_id']}[/] ({', '.join(me['roles'])})")


@app.command()
def whoami() -> None:
    """Show who the saved token belongs to."""
    me = ApiClient().get("/api/v1/me")
    console.print(f"{me['user_id']} roles={','.join(me['roles'])} projects={','.join(me['projects']) or '-'}")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    worker: Annotated[bool, typer.Option(help="Run the job worker in this process too.")] = True,
) -> None:
    """Run the API (and, for the embedded mode, the worker)."""
    from tre.server import serve as run_server

    run_server(host, port, with_worker=worker)


@app.command()
def worker(concurrency: int = 2) -> None:
    """Run the job worker: dispatch queued jobs to the configured executor."""
    from tre.jobs.worker import Worker
    from tre.store.db import init_db, make_engine

    settings = get_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    w = Worker(settings, engine, concurrency=concurrency)
    try:
        w.serve_forever()
    except KeyboardInterrupt:
        w.stop()


@app.command()
def demo() -> None:
    """End-to-end demo on the embedded defaults (SQLite + local sandbox)."""
    from tre.demo import run_demo

    run_demo()


def run() -> None:
    """The console script: usage mistakes and failures alike end as one line on stderr."""
    try:
        rv = app(standalone_mode=False)
    except typer.Abort:
        err_console.print("error: aborted", highlight=False)
        sys.exit(1)
    except typer.TyperException as exc:  # usage mistakes: missing or malformed arguments
        fmt = getattr(exc, "format_message", None)
        message = fmt() if callable(fmt) else str(exc)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        err_console.print(f"error: {message}{hint}", highlight=False, soft_wrap=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except (CliError, TreError) as exc:
        err_console.print(f"error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    run()
