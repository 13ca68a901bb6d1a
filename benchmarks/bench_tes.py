"""TES listing cost against tre's own job listing (docs/tes.md).

Creates N tasks through the TES route (each a job with the same inline code, admitted as
any job), then times, through the API on SQLite: ``GET /api/v1/jobs?limit=256`` (the
baseline), ``GET /ga4gh/tes/v1/tasks`` with page_size 256 in the MINIMAL and BASIC views,
and a tag filter that 1 task in 100 matches (tags are judged in Python, so that page scans
every task). Prints median milliseconds and the ratios to the baseline.

    PYTHONPATH=. python benchmarks/bench_tes.py            # N=2000
    PYTHONPATH=. python benchmarks/bench_tes.py --tasks 500
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.worlds import IMAGE, WorldFactory
from tre.api.app import create_app
from tre.auth.tokens import TokenIssuer
from tre.config import Settings
from tre.store.db import init_db, make_engine, session_scope


def median_ms(call, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", policies_dir=Path(__file__).parents[1] / "policies")
        settings.ensure_dirs()
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        with session_scope(engine) as s:
            world = WorldFactory(s, actor="root")
            world.users({"root": ["admin"], "alice": ["researcher"]})
            world.project("lung", "Lung", members=["alice"], quota={"max_concurrent_jobs": args.tasks + 1})
            world.approve_image("lung")
        token = TokenIssuer.from_settings(settings).mint("alice", ["researcher"], ttl_s=3600)
        headers = {"Authorization": f"Bearer {token}"}
        client = TestClient(create_app(settings, engine))
        start = time.perf_counter()
        for i in range(args.tasks):
            task = {
                "name": f"task-{i}",
                "inputs": [{"path": "/code/a.py", "content": "print('hi')\n"}],
                "executors": [{"image": IMAGE, "command": ["python3", "a.py"]}],
                "tags": {"Project": "lung", "Shard": str(i % 100)},
            }
            assert client.post("/ga4gh/tes/v1/tasks", json=task, headers=headers).status_code == 200
        create_ms = (time.perf_counter() - start) * 1000 / args.tasks
        base = median_ms(lambda: client.get("/api/v1/jobs", params={"limit": 256}, headers=headers))
        runs = {
            "MINIMAL": {"page_size": 256},
            "BASIC": {"page_size": 256, "view": "BASIC"},
            "tag 1%": {"page_size": 256, "tag_key": "Shard", "tag_value": "7"},
        }
        print(f"{args.tasks} tasks; create {create_ms:.1f} ms per task (admission, code store, audit)")
        print(f"GET /api/v1/jobs?limit=256: {base:.1f} ms")
        for label, params in runs.items():
            ms = median_ms(lambda p=params: client.get("/ga4gh/tes/v1/tasks", params=p, headers=headers))
            print(f"GET /ga4gh/tes/v1/tasks {label:8s}: {ms:7.1f} ms  ratio to jobs listing {ms / base:5.2f}")


if __name__ == "__main__":
    main()
