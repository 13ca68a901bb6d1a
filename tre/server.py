"""Running the API with uvicorn, optionally with the worker in a background thread.

The embedded mode (one machine, SQLite) runs both in one process so `tre serve` is all a
small site needs; production runs `tre serve --no-worker` and `tre worker` separately.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import uvicorn
from sqlalchemy import Engine
from uvicorn.supervisors import Multiprocess

from egress_review import expiry
from tre import audit
from tre.api.app import create_app
from tre.api.limits import uvicorn_options
from tre.config import Settings, get_settings
from tre.jobs.worker import Worker
from tre.store.db import init_db, make_engine

if TYPE_CHECKING:
    from tre.federation.node.agent import NodeAgent

# Given the server before it starts, to stop it later (``server.should_exit = True``).
ServerHook = Callable[[uvicorn.Server], None]
# Called once the API's socket listens (a banner saying where it answers, `tre serve`).
Listening = Callable[[], None]


def build(settings: Settings | None = None, with_worker: bool = True) -> tuple[object, Worker | None]:
    settings = settings or get_settings()
    app = create_app(settings)
    worker = (
        Worker(settings, app.state.engine, periodic=[expiry.sweeper(app.state.engine, settings)])
        if with_worker
        else None
    )
    return app, worker


def freeze_startup_objects() -> None:
    """Exempt everything alive after start-up from the cyclic garbage collector's full passes.

    Why: a server process holds some hundred thousand long-lived objects (modules, the
    SQLAlchemy mappers and compiled statements, FastAPI's routes and pydantic schemas), and
    every full (generation 2) pass walked them all: 200 ms with every request of the process
    waiting, a p99 of seconds at 100 submissions/s (docs/api-load.md). They never become
    garbage, so they are moved out of the collector's sight once (``gc.freeze``); objects
    made by requests are collected as before. Only for server processes: a test process
    building many apps must keep collecting them.
    """
    gc.collect()
    gc.freeze()


def start_node_agent(settings: Settings, engine: Engine) -> NodeAgent:
    """The federation agent of this node (docs/federation.md), wired to this node's airlock
    and catalogue; it connects out to the hub named by `tre node join`."""
    from egress_review import federated
    from tre.federation.node.agent import NodeAgent
    from tre.federation.node.config import load
    from tre.federation.node.search import answer_counts

    agent = NodeAgent(settings, engine, load(settings), federated, answer_counts)
    agent.start()
    return agent


def worker_process_app() -> object:
    """The app of one uvicorn worker process when `Settings.api_workers` > 1 (settings from
    the environment; the parent process has already migrated the database)."""
    # Ctrl-C reaches every process of the terminal's group: uvicorn's supervisor (the parent)
    # stops these children with SIGTERM; a child that also took SIGINT sent it again to
    # itself after its shutdown, from inside its event loop, and printed a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    app = create_app(get_settings(), migrate=False)
    freeze_startup_objects()
    return app


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handlers, where the caller stops it.

    Why: uvicorn swaps in its handlers while it serves and, once stopped, sends the caught
    signals again to whatever handler was there before, from inside its event loop; `tre`'s
    handler (`tre.cli.interrupts`) asks the server to stop instead (``should_exit``; a
    second signal ends the process at once)."""

    def __init__(
        self, config: uvicorn.Config, on_listening: Listening | None = None, own_signals: bool = False
    ) -> None:
        super().__init__(config)
        self._on_listening = on_listening
        self._own_signals = own_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._own_signals:
            with super().capture_signals():
                yield
            return
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up (the app's lifespan, then the listening socket), then the
        ``on_listening`` hook: a banner printed before this lied to a script waiting on it
        (its first connection was refused while the app was still being built)."""
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self._on_listening is not None:
            self._on_listening()


def run_app(
    app: object,
    host: str,
    port: int,
    on_server: ServerHook | None = None,
    on_listening: Listening | None = None,
) -> None:
    """Serve ``app`` until stopped: by uvicorn's own signal handling, or, with ``on_server``,
    by whoever it handed the server to (they set ``should_exit``). ``on_listening`` is called
    once the socket listens (never if the server stopped first or could not start)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_options())  # type: ignore[arg-type]
    server = _Server(config, on_listening, own_signals=on_server is None)
    if on_server is not None:
        on_server(server)
    if not server.should_exit:  # asked to stop while the app was being built
        server.run()


def serve(
    host: str,
    port: int,
    with_worker: bool = True,
    settings: Settings | None = None,
    node: bool = False,
    on_server: ServerHook | None = None,
    on_listening: Listening | None = None,
) -> None:
    """The API (and the worker, and the federation agent) until stopped; ``on_server`` and
    ``on_listening``: see `run_app`."""
    settings = settings or get_settings()
    if settings.api_workers > 1:
        _serve_processes(host, port, with_worker, settings, node, on_listening)
        return
    app, worker = build(settings, with_worker)
    agent = start_node_agent(settings, app.state.engine) if node else None  # type: ignore[attr-defined]
    thread = None
    if worker is not None:
        thread = threading.Thread(target=worker.serve_forever, name="tre-worker", daemon=True)
        thread.start()
    freeze_startup_objects()
    try:
        run_app(app, host, port, on_server, on_listening)
    finally:
        if agent is not None:
            agent.stop()
        if worker is not None and thread is not None:
            worker.stop()
            thread.join(timeout=10)


def _serve_processes(
    host: str,
    port: int,
    with_worker: bool,
    settings: Settings,
    node: bool = False,
    on_listening: Listening | None = None,
) -> None:
    """Several API processes (uvicorn's supervisor here, the job worker in a thread beside it).

    The supervisor binds the socket and listens on it before the processes start (as
    ``uvicorn.run`` would, plus the ``listen``): a client that connects once ``on_listening``
    said so waits in the backlog until a process accepts it, never refused.

    SQLite writers of all processes queue on one file lock (`tre.store.writer_lock`); caches
    are per process, so a role change made through one process reaches the others within
    `tre.auth.user_cache.TTL_S` seconds.
    """
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous)
    init_db(engine)  # once, before the workers start
    audit.configure(engine, settings.keys_dir)  # the worker thread's appends sign with this key
    worker = Worker(settings, engine, periodic=[expiry.sweeper(engine, settings)]) if with_worker else None
    agent = start_node_agent(settings, engine) if node else None
    thread = None
    if worker is not None:
        thread = threading.Thread(target=worker.serve_forever, name="tre-worker", daemon=True)
        thread.start()
    try:
        config = uvicorn.Config(
            "tre.server:worker_process_app",
            factory=True,
            workers=settings.api_workers,
            host=host,
            port=port,
            log_level="warning",
            **uvicorn_options(),  # type: ignore[arg-type]
        )
        sock = config.bind_socket()
        sock.listen(config.backlog)
        if on_listening is not None:
            on_listening()
        try:
            Multiprocess(config, sockets=[sock]).run()
        except KeyboardInterrupt:  # as uvicorn.run: the supervisor's Ctrl-C ends it quietly
            pass
    finally:
        if agent is not None:
            agent.stop()
        if worker is not None and thread is not None:
            worker.stop()
            thread.join(timeout=10)


class BackgroundServer:
    """uvicorn in a thread on a chosen port (the demo and end-to-end tests)."""

    def __init__(self, app: object, host: str = "127.0.0.1", port: int = 0) -> None:
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=host,
            port=port,
            log_level="warning",
            **uvicorn_options(),  # type: ignore[arg-type]
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
