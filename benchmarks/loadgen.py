"""A cheap open-loop HTTP/1.1 load generator: raw asyncio protocols, keep-alive, pre-built requests.

Why not aiohttp: on a 2-core machine the generator competes with the server it measures,
and aiohttp's client cost about 0.85 ms of CPU per read and 3.2 ms per submission in
`bench_api.py` (request building, JSON encoding, its connector and response objects) —
at 500 reads/s almost half a core taken from the API. Here every request's bytes are built
before the clock starts, a response is parsed by `httptools` (the C parser uvicorn uses),
and the event loop is uvloop when installed.

Open loop: request *i* is due at ``start + i / rate``; a timer sends it on an idle
keep-alive connection (or queues it for the next connection to free up or open), and its
latency is measured from when it was due, never from when it was sent, so a stalled
server shows up in the percentiles (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httptools

TIMEOUT_S = 30.0
PREOPEN = 32  # connections opened before the clock starts
MAX_CONNECTIONS = 512


@dataclass(frozen=True)
class Prepared:
    """One request, ready to write: the endpoint label it is reported under and its bytes."""

    endpoint: str
    data: bytes


def build_request(host: str, method: str, path: str, token: str, body: bytes | None) -> bytes:
    """The raw HTTP/1.1 request (keep-alive is HTTP/1.1's default)."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {token}",
        "Accept: application/json",
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


@dataclass
class _Run:
    """Shared state of one run: the queue of due requests, idle connections and results."""

    requests: Sequence[Prepared]
    results: dict[str, list[tuple[float, int, float]]]  # latency, status, due (s after start)
    start: float = 0.0
    idle: deque[_Connection] = field(default_factory=deque)
    waiting: deque[tuple[int, float]] = field(default_factory=deque)
    open_count: int = 0
    opening: int = 0
    outstanding: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, i: int, due: float, status: int) -> None:
        self.results[self.requests[i].endpoint].append((time.perf_counter() - due, status, due - self.start))
        self.outstanding -= 1
        if self.outstanding == 0:
            self.done.set()


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.current: tuple[int, float] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.run.open_count += 1
        self.run.opening -= 1
        self._next()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.open_count -= 1
        if self in self.run.idle:
            self.run.idle.remove(self)
        if self.current is not None:
            i, due = self.current
            self.current = None
            self.run.record(i, due, -1)

    # httptools callbacks
    def on_message_complete(self) -> None:
        assert self.current is not None
        i, due = self.current
        self.current = None
        self.run.record(i, due, self.parser.get_status_code())
        if self.parser.should_keep_alive():
            self._next()
        else:
            assert self.transport is not None
            self.transport.close()

    def send(self, i: int, due: float) -> None:
        assert self.transport is not None
        self.current = (i, due)
        self.transport.write(self.run.requests[i].data)

    def _next(self) -> None:
        if self.run.waiting:
            self.send(*self.run.waiting.popleft())
        else:
            self.run.idle.append(self)


async def drive(
    host: str, port: int, requests: Sequence[Prepared], rate: float, endpoints: Sequence[str]
) -> dict[str, Any]:
    """Send ``requests`` at ``rate`` per second, open loop; raw latencies per endpoint."""
    loop = asyncio.get_running_loop()
    run = _Run(requests, {e: [] for e in endpoints})
    run.outstanding = len(requests)

    async def open_one() -> None:
        run.opening += 1
        try:
            await loop.create_connection(lambda: _Connection(run), host, port)
        except OSError:
            run.opening -= 1
            if run.waiting:  # nothing will carry it: count it as failed
                i, due = run.waiting.popleft()
                run.record(i, due, -1)

    await asyncio.gather(*(open_one() for _ in range(PREOPEN)))
    pending_opens: set[asyncio.Task[None]] = set()

    def fire(i: int, due: float) -> None:
        if run.idle:
            run.idle.popleft().send(i, due)
            return
        run.waiting.append((i, due))
        if run.open_count + run.opening < MAX_CONNECTIONS and run.opening < len(run.waiting):
            task = loop.create_task(open_one())
            pending_opens.add(task)
            task.add_done_callback(pending_opens.discard)

    start = run.start = time.perf_counter() + 0.2
    offset = loop.time() - time.perf_counter()  # loop clock = perf_counter + offset
    for i in range(len(requests)):
        due = start + i / rate
        loop.call_at(due + offset, fire, i, due)
    if requests:
        try:
            await asyncio.wait_for(run.done.wait(), timeout=len(requests) / rate + 0.2 + TIMEOUT_S)
        except TimeoutError:
            pass
    elapsed = time.perf_counter() - start
    for conn in list(run.idle):
        if conn.transport is not None:
            conn.transport.close()
    # Whatever is still waiting or in flight timed out.
    answered = sum(len(v) for v in run.results.values())
    unanswered = len(requests) - answered
    if unanswered > 0:
        counts = {e: 0 for e in endpoints}
        for p in requests:
            counts[p.endpoint] += 1
        for e in endpoints:
            missing = counts[e] - len(run.results[e])
            run.results[e] += [(TIMEOUT_S, -1, -1.0)] * missing
    return {"elapsed": elapsed, "results": run.results}


def run_open_loop(
    host: str, port: int, requests: Sequence[Prepared], rate: float, endpoints: Sequence[str]
) -> dict[str, Any]:
    """`drive` on uvloop when it is installed (cheaper per request), else asyncio's loop."""
    try:
        import uvloop

        return uvloop.run(drive(host, port, requests, rate, endpoints))
    except ImportError:
        return asyncio.run(drive(host, port, requests, rate, endpoints))
