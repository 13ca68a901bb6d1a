"""Open-loop load on the API: fixed arrival rates, latency per endpoint, SQLite and PostgreSQL.

Three processes, as in a deployment: this one (setup and report), the API (uvicorn, one
worker process, job worker off) and the load generator (`benchmarks.loadgen`: pre-built
requests on raw keep-alive connections, about 0.1 ms of CPU a request; ``--generator
aiohttp`` for the first one, which cost about 1-3 ms). The generator is open-loop:
request *i* is due at ``start + i / rate`` whether or not earlier ones have answered, and
its latency is measured from when it was due, so a stalled server shows up in the
percentiles instead of silently lowering the offered load (coordinated omission).

Targets (issue 12, 2 cores, generator on the same machine): job submission 100 req/s with
p99 <= 100 ms; reads 500 req/s with p99 <= 50 ms. The script prints the ratio to the target
per endpoint; it asserts nothing, since the machine it runs on may be shared.

    python benchmarks/bench_api.py                      # both databases, 10 s per phase
    python benchmarks/bench_api.py --db sqlite --duration 20
    python benchmarks/bench_api.py --db sqlite --profile /tmp/api.svg   # py-spy, all threads
    python benchmarks/bench_api.py --db sqlite --phases mixed --submit-rate 20 --read-rate 100

Besides latency it prints CPU seconds per request of the API processes, of PostgreSQL and
of the generator itself (docs/api-load.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # (bench_api_cpu.py may put another revision's tre first)
    sys.path.insert(0, str(REPO))


SUBMIT_TARGET = (100.0, 0.100)  # req/s, p99 seconds
READ_TARGET = (500.0, 0.050)
GENERATOR = "raw"  # or "aiohttp" (--generator)
READ_ENDPOINTS = ("GET /api/v1/jobs", "GET /api/v1/jobs/{id}", "GET /api/v1/datasets", "GET /api/v1/projects")


@dataclass(frozen=True)
class Phase:
    """One load phase: a mix of endpoints offered together at a total arrival rate."""

    name: str
    rate: float
    target_p99_s: float
    endpoints: tuple[str, ...]  # round-robin over these


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- setup


def prepare(home: Path, url: str) -> dict[str, Any]:
    """Migrate, populate a small TRE (users, project, dataset, grant, a few jobs), mint tokens."""
    from pydicom.data import get_testdata_file

    from tests.worlds import IMAGE, WorldFactory
    from tre.audit import configure
    from tre.auth.tokens import TokenIssuer
    from tre.config import Settings
    from tre.store.db import init_db, make_engine, session_scope

    settings = Settings(
        home=home, database_url=url, policies_dir=REPO / "policies", data_dir=home.parent / "data"
    )
    settings.ensure_dirs()
    data = home.parent / "data" / "ct"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(get_testdata_file(name), data / name)
    engine = make_engine(url)
    init_db(engine)
    configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        make = WorldFactory(s)
        make.users({"root": ["admin"], "alice": ["researcher"]})
        make.project(
            "p1",
            "Load project",
            ["alice"],
            quota={"max_cpu": 4, "max_memory_mb": 4096, "max_concurrent_jobs": 1_000_000},
        )
        make.dataset("ct1", data, "CT sample")
        make.grant("p1", "ct1", days=1)
        make.approve_image("p1", IMAGE)
        job_ids = [
            make.finished_job(settings, "p1", "alice", ["ct1"], {"out.txt": b"x" * 10}) for _ in range(20)
        ]
    engine.dispose()
    issuer = TokenIssuer.from_settings(settings)
    return {"token": issuer.mint("alice", ["researcher"], ttl_s=3600), "job_ids": job_ids, "image": IMAGE}


def app_factory() -> Any:
    """The app for one uvicorn worker process (``BENCH_HOME``/``BENCH_URL`` from `serve`)."""
    from tre.api.app import create_app
    from tre.config import Settings

    home, url = os.environ["BENCH_HOME"], os.environ["BENCH_URL"]
    settings = Settings(home=Path(home), database_url=url, policies_dir=REPO / "policies")
    app = create_app(settings, migrate=False)
    if not os.environ.get("BENCH_NOFREEZE"):  # BENCH_NOFREEZE=1: the A/B of docs/api-load.md
        from tre.server import freeze_startup_objects

        freeze_startup_objects()  # as `tre serve` does
    return app


def serve(home: str, url: str, port: int, workers: int) -> None:
    """The API process: the real app under uvicorn as `tre serve` runs it, worker off, access
    log off; ``workers`` > 1 runs that many uvicorn worker processes."""
    import uvicorn

    from tre.api.limits import uvicorn_options

    os.environ["BENCH_HOME"], os.environ["BENCH_URL"] = home, url
    options = uvicorn_options()
    if os.environ.get("BENCH_HTTP"):
        options["http"] = os.environ["BENCH_HTTP"]
    uvicorn.run(
        "benchmarks.bench_api:app_factory",
        factory=True,
        workers=workers if workers > 1 else None,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        **options,  # type: ignore[arg-type]
    )


def start_server(
    home: Path, url: str, profile: Path | None, workers: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, __file__, "--serve", str(home), url, str(port), str(workers)]
    if profile is not None:
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        fmt = "raw" if profile.suffix == ".txt" else "flamegraph"  # raw: collapsed stacks
        # BENCH_PYSPY: extra py-spy options, e.g. "--gil" (Python CPU only) "--subprocesses".
        cmd = [
            pyspy,
            "record",
            "-r",
            "200",
            *os.environ.get("BENCH_PYSPY", "").split(),
            "-f",
            fmt,
            "-o",
            str(profile),
            "--",
            *cmd,
        ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A file, not a pipe: a server that logs more than a pipe holds would block on it.
    log = (home.parent / "api.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, base
        except OSError:
            if proc.poll() is not None:
                log_tail = (home.parent / "api.log").read_text()[-2000:]
                raise RuntimeError(f"API did not start: {log_tail}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API did not start within 60 s")


# --------------------------------------------------------------------------- load generator


def request_for(endpoint: str, ctx: dict[str, Any], i: int) -> tuple[str, str, dict[str, Any] | None]:
    jobs = ctx["job_ids"]
    if endpoint == "POST /api/v1/jobs":
        body = {
            "project_id": "p1",
            "image": ctx["image"],
            "command": ["python3", "-c", f"print({i})"],
            "dataset_ids": ["ct1"],
            "cpu": 1,
            "memory_mb": 512,
            "time_limit_s": 30,
        }
        return "POST", "/api/v1/jobs", body
    if endpoint == "GET /api/v1/jobs/{id}":
        return "GET", f"/api/v1/jobs/{jobs[i % len(jobs)]}", None
    method, path = endpoint.split(" ", 1)
    return method, path, None


async def _drive(base: str, ctx: dict[str, Any], phase: Phase, duration: float) -> dict[str, Any]:
    import aiohttp

    n = int(phase.rate * duration)
    results: dict[str, list[tuple[float, int]]] = {e: [] for e in phase.endpoints}
    headers = {"Authorization": f"Bearer {ctx['token']}"}
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers, timeout=timeout) as http:

        async def one(i: int, due: float) -> None:
            endpoint = phase.endpoints[i % len(phase.endpoints)]
            method, path, body = request_for(endpoint, ctx, i)
            status = 0
            try:
                async with http.request(method, path, json=body) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                print(repr(exc), file=sys.stderr)
                status = -1
            results[endpoint].append((time.perf_counter() - due, status))

        start = time.perf_counter() + 0.2
        tasks = []
        for i in range(n):
            due = start + i / phase.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "results": results}


def _prepared(base: str, ctx: dict[str, Any], phase: Phase, duration: float) -> list[Any]:
    """Every request of the phase as raw bytes, built before the clock starts."""
    from benchmarks.loadgen import Prepared, build_request

    host = base.removeprefix("http://")
    out = []
    for i in range(int(phase.rate * duration)):
        endpoint = phase.endpoints[i % len(phase.endpoints)]
        method, path, body = request_for(endpoint, ctx, i)
        data = json.dumps(body).encode() if body is not None else None
        out.append(Prepared(endpoint, build_request(host, method, path, ctx["token"], data)))
    return out


def generator_main(base: str, ctx_json: str, phase_json: str, duration: float, kind: str) -> None:
    """The load generator process: prints one JSON document with raw latencies.

    ``raw`` (default): `benchmarks.loadgen`, pre-built requests on raw keep-alive
    connections; ``aiohttp``: the first generator, kept to compare the generators' cost."""
    ctx = json.loads(ctx_json)
    p = json.loads(phase_json)
    phase = Phase(p["name"], p["rate"], p["target_p99_s"], tuple(p["endpoints"]))
    if kind == "aiohttp":
        out = asyncio.run(_drive(base, ctx, phase, duration))
    else:
        from benchmarks.loadgen import run_open_loop

        requests = _prepared(base, ctx, phase, duration)
        host, port = base.removeprefix("http://").rsplit(":", 1)
        cpu0 = time.process_time()
        out = run_open_loop(host, int(port), requests, phase.rate, phase.endpoints)
        out["generator_run_cpu_s"] = time.process_time() - cpu0
    print(json.dumps(out))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (py-spy's child, uvicorn's worker processes)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += parents.get(p, [])
    return tree


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass  # a PostgreSQL backend that ended: its time went to the postmaster's children
    return total


def run_phase(
    base: str,
    ctx: dict[str, Any],
    phase: Phase,
    duration: float,
    server_pids: list[int],
    db_pids: list[int] | None = None,
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--generate",
        base,
        json.dumps(ctx),
        json.dumps(phase.__dict__),
        str(duration),
        GENERATOR,
    ]
    cpu_before = _cpu(server_pids)
    db_before = _cpu(db_pids or [])
    gen_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    out = dict(json.loads(done.stdout))
    out["server_cpu_s"] = _cpu(server_pids) - cpu_before
    out["db_cpu_s"] = _cpu(db_pids or []) - db_before
    gen_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["generator_cpu_s"] = (gen_after.ru_utime - gen_before.ru_utime) + (
        gen_after.ru_stime - gen_before.ru_stime
    )
    return out


# --------------------------------------------------------------------------- report


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def report(db: str, phase: Phase, out: dict[str, Any]) -> list[str]:
    lines = []
    for endpoint, samples in out["results"].items():
        lat = sorted(s[0] for s in samples)
        slow = sorted(s[2] for s in samples if len(s) > 2 and s[0] >= percentile(lat, 0.99))
        ok = sum(1 for s in samples if 200 <= s[1] < 300)
        errors = len(samples) - ok
        p50, p95, p99 = (percentile(lat, q) * 1000 for q in (0.50, 0.95, 0.99))
        thr = ok / out["elapsed"] if out["elapsed"] else 0.0
        target_s = SUBMIT_TARGET[1] if endpoint.startswith("POST") else READ_TARGET[1]
        ratio = p99 / (target_s * 1000)
        per_endpoint_rate = phase.rate * phase.endpoints.count(endpoint) / len(phase.endpoints)
        lines.append(
            f"{db:10} {phase.name:7} {endpoint:24} offered {per_endpoint_rate:6.1f}/s  ok {thr:6.1f}/s  "
            f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms  errors {errors:4d}  "
            f"p99/target {ratio:5.2f}"
            + (f"  slowest 1% due at {slow[0]:.1f}-{slow[-1]:.1f} s" if slow else "")
        )
    total_ok = sum(1 for s in out["results"].values() for x in s if 200 <= x[1] < 300)
    answered = sum(len(s) for s in out["results"].values())
    cpu_ms = 1000 * out["server_cpu_s"] / answered if answered else float("nan")
    lines.append(
        f"{db:10} {phase.name:7} {'(all)':24} offered {phase.rate:6.1f}/s  "
        f"ok {total_ok / out['elapsed']:6.1f}/s  server CPU {out['server_cpu_s']:.2f} s = "
        f"{cpu_ms:.2f} ms/request  (max {1000 / cpu_ms if cpu_ms else 0:.0f} req/s per core)"
        + (
            f"  + PostgreSQL CPU {1000 * out['db_cpu_s'] / answered:.2f} ms/request"
            if out.get("db_cpu_s") and answered
            else ""
        )
        + f"  generator CPU {1000 * out.get('generator_cpu_s', 0.0) / max(answered, 1):.2f} ms/request"
        + (
            f" ({1000 * out['generator_run_cpu_s'] / max(answered, 1):.2f} while sending)"
            if "generator_run_cpu_s" in out
            else ""
        )
    )
    return lines


def database_url(db: str, home: Path) -> tuple[str, Any]:
    if db == "sqlite":
        return f"sqlite:///{home / 'tre.db'}", None
    from tests.pg_server import PgServer

    server = PgServer()
    server.start()
    return server.create_database(), server


def _postmaster_pid(pg: Any) -> int:
    """PostgreSQL's main process (its backends are its children), from its pid file."""
    return int((Path(pg.data) / "postmaster.pid").read_text().split()[0])


def bench(db: str, duration: float, phases: list[Phase], profile: Path | None, workers: int) -> list[str]:
    root = Path(tempfile.mkdtemp(prefix="tre-bench-api-"))
    home = root / "home"
    url, pg = database_url(db, home)
    lines: list[str] = []
    try:
        ctx = prepare(home, url)
        proc, base = start_server(home, url, profile, workers)
        try:
            # Every endpoint once warm: FastAPI builds a router's route state (pydantic schemas)
            # on its first request, a few hundred ms that would land in one phase's p99.
            every = tuple(dict.fromkeys(e for p in phases for e in p.endpoints))
            run_phase(base, ctx, Phase("warmup", 50, 1.0, every), 2.0, [proc.pid])
            pids = process_tree(proc.pid)  # after the warm-up: uvicorn's workers have started
            db_pids = process_tree(_postmaster_pid(pg)) if pg is not None else []
            for phase in phases:
                lines += report(db, phase, run_phase(base, ctx, phase, duration, pids, db_pids))
                print("\n".join(lines[-len(set(phase.endpoints)) - 1 :]), flush=True)
            errors = (root / "api.log").read_text(errors="replace").count("Traceback")
            lines.append(f"{db:10} server log: {errors} tracebacks")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        generator_main(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    ap.add_argument("--submit-rate", type=float, default=SUBMIT_TARGET[0])
    ap.add_argument("--read-rate", type=float, default=READ_TARGET[0])
    ap.add_argument("--profile", type=Path, help="record the API with py-spy (flame graph SVG)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument(
        "--phases",
        nargs="+",
        default=["submit", "read"],
        choices=["submit", "read", "mixed"],
        help="which phases, in order (mixed: both at once)",
    )
    ap.add_argument("--reads", nargs="+", help="read endpoints, e.g. 'GET /api/v1/datasets'")
    ap.add_argument("--generator", choices=["raw", "aiohttp"], default="raw", help="load generator")
    args = ap.parse_args()
    global GENERATOR
    GENERATOR = args.generator
    phases = [
        Phase("submit", args.submit_rate, SUBMIT_TARGET[1], ("POST /api/v1/jobs",)),
        Phase(
            "read",
            args.read_rate,
            READ_TARGET[1],
            tuple(args.reads or READ_ENDPOINTS),
        ),
    ]
    # Mixed: submissions and reads at once, in the ratio of the two rates (reads then see
    # the store change under them, which empties the read cache; tre.api.read_cache).
    per_submit = max(1, round(args.read_rate / args.submit_rate))
    mixed = ("POST /api/v1/jobs", *(READ_ENDPOINTS[i % len(READ_ENDPOINTS)] for i in range(per_submit)))
    phases.append(Phase("mixed", args.submit_rate * (1 + per_submit), READ_TARGET[1], mixed))
    phases = [next(p for p in phases if p.name == name) for name in args.phases]
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(
        f"# bench_api: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"{args.duration:.0f} s per phase"
    )
    lines = []
    for db in dbs:
        lines += bench(db, args.duration, phases, args.profile, args.workers)
    print("\n# summary")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
