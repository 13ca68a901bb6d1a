"""Audit log throughput: appends/s (batched and one per transaction) and offline verification.

Targets (issue 4): >= 5,000 appends/s batched; 1,000,000 entries verified in < 10 s on 2 cores.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit.py                # quick
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit.py --verify-entries 1000000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit.py --pg-url postgresql+psycopg://...

The verification bundle is produced by the real append path (record_events into a SQLite
file, batches of --batch) and the real export, then verified with tre.audit.verify.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine

from tre.audit import AuditEvent, record_event, record_events
from tre.audit.service import iter_export, plan_export
from tre.audit.signing import AuditSigner, configure, load_or_create_signer
from tre.audit.verify import verify_bundle
from tre.store.db import init_db, make_engine, session_factory, session_scope


def events(n: int, start: int) -> list[AuditEvent]:
    return [
        AuditEvent(
            actor=f"user{(start + i) % 50}",
            action="dataset.read",
            project_id=f"p{(start + i) % 7}",
            dataset_id=f"ct{(start + i) % 11}",
            job_id=f"{start + i:032x}",
            details={"series": start + i, "bytes": 524288},
        )
        for i in range(n)
    ]


def bench_batched(engine: Engine, signer: AuditSigner, total: int, batch: int) -> float:
    t = time.perf_counter()
    done = 0
    while done < total:
        n = min(batch, total - done)
        with session_scope(engine) as s:
            record_events(s, events(n, done), signer=signer)
        done += n
    return total / (time.perf_counter() - t)


def bench_single(engine: Engine, total: int) -> float:
    t = time.perf_counter()
    for i in range(total):
        with session_scope(engine) as s:
            record_event(s, actor="alice", action="job.submit", project_id="p1", job_id=f"{i:032x}")
    return total / (time.perf_counter() - t)


def fresh_engine(url: str, keys: Path) -> Engine:
    engine = make_engine(url)
    init_db(engine)
    configure(engine, keys)
    return engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--appends", type=int, default=50_000, help="entries for the batched append benchmark")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--single", type=int, default=500, help="entries appended one transaction each")
    ap.add_argument("--verify-entries", type=int, default=100_000)
    ap.add_argument("--pg-url", help="also benchmark appends on this (empty) PostgreSQL database")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        keys = root / "keys"
        signer = load_or_create_signer(keys)

        engine = fresh_engine(f"sqlite:///{root / 'append.db'}", keys)
        results["sqlite_appends_per_s_batched"] = bench_batched(engine, signer, args.appends, args.batch)
        results["sqlite_appends_per_s_single_tx"] = bench_single(engine, args.single)
        engine.dispose()
        if args.pg_url:
            pg = fresh_engine(args.pg_url, keys)
            results["pg_appends_per_s_batched"] = bench_batched(pg, signer, args.appends, args.batch)
            results["pg_appends_per_s_single_tx"] = bench_single(pg, args.single)
            pg.dispose()

        n = args.verify_entries
        vengine = fresh_engine(f"sqlite:///{root / 'verify.db'}", keys)
        t = time.perf_counter()
        bench_batched(vengine, signer, n, max(args.batch, 5000))
        results["build_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with session_scope(vengine) as s:
            plan = plan_export(s, signer)
        bundle = root / "bundle.jsonl"
        with bundle.open("wb") as fh:
            for chunk in iter_export(plan, session_factory(vengine)):
                fh.write(chunk)
        results["export_s"] = time.perf_counter() - t
        results["bundle_mib"] = bundle.stat().st_size / 2**20
        vengine.dispose()

        t = time.perf_counter()
        data = bundle.read_bytes()
        report = verify_bundle(data, signer.verifier_key)
        elapsed = time.perf_counter() - t
        if not report.ok:
            raise SystemExit(f"verification failed: {report.errors}")
        results["verify_entries"] = n
        results["verify_s"] = elapsed
        results["verify_entries_per_s"] = n / elapsed

    for k, v in results.items():
        print(f"{k:34s} {v:,.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
