"""CPU time per API request, in process: the figure latency on a shared machine hides.

Runs the real app (SQLite or PostgreSQL, read cache on or off) through httpx's ASGI
transport in one event loop, ``--concurrency`` requests at a time, and prints the process's
CPU milliseconds (all threads, from ``time.process_time``) per request per endpoint. No
sockets, no HTTP parsing: uvicorn's share is not in these figures (bench_api.py has it), the
client's small share is.

A/B against another revision of the code: export it and point ``--code`` at it, e.g.

    git archive main | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    python benchmarks/bench_api_cpu.py --code /tmp/base
    python benchmarks/bench_api_cpu.py                 # this working tree
    python benchmarks/bench_api_cpu.py --no-read-cache # the full read path
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", type=Path, default=REPO, help="tree whose tre package to measure")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("-n", type=int, default=300, help="requests per endpoint")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the median is printed")
    ap.add_argument("--no-read-cache", action="store_true")
    ap.add_argument("--only", nargs="+", help="endpoints to measure, e.g. 'POST /api/v1/jobs'")
    return ap.parse_args()


async def _measure(
    app: Any, ctx: dict[str, Any], n: int, concurrency: int, only: list[str] | None
) -> dict[str, float]:
    import httpx

    headers = {"Authorization": f"Bearer {ctx['token']}"}
    jobs = ctx["job_ids"]
    body = {
        "project_id": "p1",
        "image": ctx["image"],
        "command": ["python3", "-c", "print(1)"],
        "dataset_ids": ["ct1"],
        "cpu": 1,
        "memory_mb": 512,
        "time_limit_s": 30,
    }
    transport = httpx.ASGITransport(app=app)
    out: dict[str, float] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
        endpoints: list[tuple[str, Any]] = [
            ("POST /api/v1/jobs", lambda i: client.post("/api/v1/jobs", json=body)),
            ("GET /api/v1/jobs", lambda i: client.get("/api/v1/jobs", params={"limit": 20})),
            ("GET /api/v1/jobs/{id}", lambda i: client.get(f"/api/v1/jobs/{jobs[i % len(jobs)]}")),
            ("GET /api/v1/datasets", lambda i: client.get("/api/v1/datasets")),
            ("GET /api/v1/projects", lambda i: client.get("/api/v1/projects")),
        ]
        for name, call in endpoints:
            if only and name not in only:
                continue
            for i in range(5):  # warm caches (token, user, parsed policies, statements)
                (await call(i)).raise_for_status()
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int, call: Any = call, sem: asyncio.Semaphore = sem) -> None:
                async with sem:
                    r = await call(i)
                    if r.status_code >= 300:
                        raise RuntimeError(f"{r.status_code} {r.text[:200]}")

            cpu0 = time.process_time()
            await asyncio.gather(*(one(i) for i in range(n)))
            out[name] = 1000 * (time.process_time() - cpu0) / n
    return out


def main() -> None:
    args = _parse()
    sys.path.insert(0, str(args.code.resolve()))
    sys.path.insert(1, str(REPO))  # tests.worlds, benchmarks.bench_api of this tree
    os.environ["TRE_API_READ_CACHE"] = "false" if args.no_read_cache else "true"
    import tre
    from benchmarks.bench_api import database_url, prepare
    from tests.worlds import IMAGE
    from tre.api.app import create_app
    from tre.config import Settings
    from tre.store.db import make_engine

    print(f"# code: {Path(tre.__file__).parent.parent}  db: {args.db}  read cache: {not args.no_read_cache}")
    root = Path(tempfile.mkdtemp(prefix="tre-bench-cpu-"))
    home = root / "home"
    url, pg = database_url(args.db, home)
    try:
        ctx = prepare(home, url)
        ctx["image"] = IMAGE
        rounds: list[dict[str, float]] = []
        for _ in range(args.rounds):
            settings = Settings(home=home, database_url=url, policies_dir=REPO / "policies")
            engine = make_engine(url)
            app = create_app(settings, engine, migrate=False)
            rounds.append(asyncio.run(_measure(app, ctx, args.n, args.concurrency, args.only)))
            engine.dispose()
        for name in rounds[0]:
            values = sorted(r[name] for r in rounds)
            print(
                f"{name:24} {values[len(values) // 2]:6.2f} ms CPU/request  "
                f"(range {values[0]:.2f}-{values[-1]:.2f}, {args.rounds} rounds of {args.n})"
            )
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
