"""Audit log throughput: appends/s (batched and one per transaction) and offline verification.

Targets (issue 11): >= 10,000 appends/s batched and 1,000,000 entries verified in < 5 s, with
witnessing on: --witnesses real tlog-witness servers on loopback cosign a checkpoint every
--witness-every batches during the append benchmark (inside the timed loop), the bundle ends
at a checkpoint they cosigned, and it is verified under a policy demanding all of them.
Ratios printed are measured / target (>= 1 is good).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit.py                # quick
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit.py --verify-entries 1000000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_audit.py --pg-url postgresql+psycopg://...

The verification bundle is produced by the real append path (record_events into a SQLite
file, batches of --batch) and the real export, then verified with tre.audit.verify.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from sqlalchemy import Engine

from tre.audit import AuditEvent, record_event, record_events
from tre.audit.note import VerifierKey
from tre.audit.service import iter_export, plan_export
from tre.audit.signing import AuditSigner, configure, load_or_create_signer
from tre.audit.verify import Policy, verify_bundle
from tre.audit.witness_server import Witness, create_witness_app, load_or_create_key
from tre.audit.witnessing import add_witness, witness_latest
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


def bench_batched(
    engine: Engine, signer: AuditSigner, total: int, batch: int, witness_every: int = 0
) -> float:
    t = time.perf_counter()
    done = 0
    batches = 0
    while done < total:
        n = min(batch, total - done)
        with session_scope(engine) as s:
            record_events(s, events(n, done), signer=signer)
        done += n
        batches += 1
        if witness_every and batches % witness_every == 0:
            witness_latest(session_factory(engine), signer)
    return total / (time.perf_counter() - t)


class LoopbackWitness:
    """A real C2SP witness (tre witness serve's app) on 127.0.0.1, in a thread."""

    def __init__(self, name: str, folder: Path, log_key: VerifierKey) -> None:
        self.witness = Witness(name, load_or_create_key(folder / "key.pem"), folder / "state.json", [log_key])
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            create_witness_app(self.witness), host="127.0.0.1", port=self.port, log_level="error"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


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
    ap.add_argument("--witnesses", type=int, default=2, help="loopback witnesses (0: witnessing off)")
    ap.add_argument("--witness-every", type=int, default=10, help="batches between witnessing rounds")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()

    results: dict[str, float] = {}
    witnesses: list[LoopbackWitness] = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        keys = root / "keys"
        signer = load_or_create_signer(keys)
        for i in range(args.witnesses):
            w = LoopbackWitness(f"witness{i}.example", root / f"w{i}", signer.verifier_key)
            add_witness(keys, f"http://127.0.0.1:{w.port}", w.witness.public_key.encode())
            witnesses.append(w)
        every = args.witness_every if witnesses else 0

        engine = fresh_engine(f"sqlite:///{root / 'append.db'}", keys)
        cpu = time.process_time()
        results["sqlite_appends_per_s_batched"] = bench_batched(
            engine, signer, args.appends, args.batch, every
        )
        # Includes the in-process witness servers' CPU; excludes waiting for the disk.
        results["sqlite_appends_per_cpu_s_batched"] = args.appends / (time.process_time() - cpu)
        results["sqlite_appends_per_s_single_tx"] = bench_single(engine, args.single)
        engine.dispose()
        if args.pg_url:
            # Witnesses remember the SQLite log's size; the PostgreSQL log is another tree.
            pg = fresh_engine(args.pg_url, keys)
            results["pg_appends_per_s_batched"] = bench_batched(pg, signer, args.appends, args.batch)
            results["pg_appends_per_s_single_tx"] = bench_single(pg, args.single)
            pg.dispose()

        n = args.verify_entries
        vkeys = root / "vkeys"  # a second log (own key and witness state) for the big bundle
        vsigner = load_or_create_signer(vkeys)
        for w in witnesses:
            w.witness.logs.setdefault(vsigner.name, []).append(vsigner.verifier_key)
            add_witness(vkeys, f"http://127.0.0.1:{w.port}", w.witness.public_key.encode())
        signer = vsigner
        vengine = fresh_engine(f"sqlite:///{root / 'verify.db'}", vkeys)
        t = time.perf_counter()
        bench_batched(vengine, signer, n, max(args.batch, 5000), every)
        results["build_s"] = time.perf_counter() - t
        t = time.perf_counter()
        outcomes = witness_latest(session_factory(vengine), signer)
        if any(o.status != "cosigned" for o in outcomes):
            raise SystemExit(f"witnessing failed: {outcomes}")
        with session_scope(vengine) as s:
            plan = plan_export(s, signer)
        bundle = root / "bundle.jsonl"
        with bundle.open("wb") as fh:
            for chunk in iter_export(plan, session_factory(vengine)):
                fh.write(chunk)
        results["export_s"] = time.perf_counter() - t
        results["bundle_mib"] = bundle.stat().st_size / 2**20
        vengine.dispose()

        policy_text = f"log {signer.verifier_key.encode()}\n" + "".join(
            f"witness {w.witness.public_key.encode()}\n" for w in witnesses
        )
        policy = Policy.parse(policy_text + f"quorum {len(witnesses)}\n")
        data = bundle.read_bytes()
        t, cpu = time.perf_counter(), time.process_time()
        report = verify_bundle(data, signer.verifier_key, (), policy)
        elapsed = time.perf_counter() - t
        # CPU seconds of this process: what one free core needs (the shared dev machine's
        # wall-clock figures swing with its load; the witness threads are idle meanwhile).
        results["verify_cpu_s"] = time.process_time() - cpu
        if not report.ok:
            raise SystemExit(f"verification failed: {report.errors}")
        results["verify_entries"] = n
        results["verify_s"] = elapsed
        results["verify_entries_per_s"] = n / elapsed
        results["verify_witnessed_checkpoints"] = report.checkpoints_witnessed
        results["ratio_batched_appends_vs_10k"] = results["sqlite_appends_per_s_batched"] / 10_000
        results["ratio_5s_vs_verify_1m"] = 5.0 / (elapsed * 1_000_000 / n)
        results["ratio_5s_vs_verify_1m_cpu"] = 5.0 / (results["verify_cpu_s"] * 1_000_000 / n)
    for w in witnesses:
        w.stop()

    for k, v in results.items():
        print(f"{k:34s} {v:,.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
