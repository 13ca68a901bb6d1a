"""A job with a very large output (a preprocessed cohort) through the platform.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_large_outputs.py [--files 10000 50000] [--sandbox]

For each size, builds a real store in a temp home (migrated SQLite), a running job whose
``/output`` holds ``series/<n>/image.nii.gz`` + ``series/<n>/image.json`` (small files), a few
large ones (8 MiB) and ``manifest.json``, then times what the platform does with it:

* the worker's recording of the outputs (walk, SHA-256 of every file, rows, audit events);
* ``GET /api/v1/jobs/{id}/outputs`` as staff and as the researcher (names screened): the
  first page and, for comparison, every page; the bytes of one answer;
* ``tre egress request`` selecting one file among all of them by name, ``#index`` and
  ``sha256:``, through ``POST /api/v1/egress/requests``;
* the peak resident memory of the process (ru_maxrss);
* with ``--sandbox`` (root, bubblewrap): a real job in the local sandbox writing the same
  tree into its own ext4 ``/output``, the executor's copy out, and the recording's scan of it.

Prints seconds and MB; no target is asserted (tests bound the mechanism: tests/jobs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.egress.test_workflow_support import seed_world, with_egress_routes
from tre.api.app import create_app
from tre.auth.tokens import TokenIssuer
from tre.config import Settings, reset_settings_cache
from tre.executors.base import JobResult
from tre.jobs.output_handles import handle_key, output_handle
from tre.jobs.worker import Worker
from tre.store.db import init_db, make_engine, session_factory, session_scope
from tre.store.models import Job, JobState

POLICY = """\
name: scale
version: "1"
description: a cohort's outputs
required_reviews: 2
job:
  allowed_images: ["registry.tre.local/*@sha256:*"]
  max_output_files: 100000
  max_output_name_chars: 1024
"""
LARGE = 8 << 20


def write_cohort(out: Path, files: int, large: int) -> int:
    """``files`` outputs like a cohort job's: per series a volume and its sidecar, a few large."""
    total = 0
    series = (files - 1) // 2
    for n in range(series):
        folder = out / "series" / f"{n:05d}"
        folder.mkdir(parents=True)
        body = n.to_bytes(4, "big") * (256 if n >= large else LARGE // 4)
        (folder / "image.nii.gz").write_bytes(body)
        (folder / "image.json").write_text(f'{{"series": {n}, "status": "ok"}}\n')
        total += len(body) + 30
    (out / "manifest.json").write_text('{"version": 1, "series": {}}\n')
    return total


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def pages(client: TestClient, url: str, headers: dict[str, str]) -> tuple[int, int, float]:
    """Every page of a listing: rows, bytes, seconds."""
    rows = size = 0
    t0 = time.perf_counter()
    offset: str | None = "0"
    while offset is not None:
        r = client.get(url, params={"offset": offset, "limit": 1000}, headers=headers)
        if r.status_code == 422:  # a listing without paging
            return -1, 0, 0.0
        r.raise_for_status()
        rows += len(r.json())
        size += len(r.content)
        offset = r.headers.get("X-Next-Offset")
    return rows, size, time.perf_counter() - t0


def run(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["TRE_HOME"] = str(home)
        os.environ["TRE_SANDBOX_HOST_TOOLCHAIN"] = "1"
        reset_settings_cache()
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "scale.yaml").write_text(POLICY)
        settings = Settings(home=home, policies_dir=policies, sandbox_host_toolchain=True)
        settings.ensure_dirs()
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        with session_scope(engine) as s:
            world = seed_world(s, settings, {}, policy="scale", job_state=JobState.running.value)
        out = settings.jobs_dir / world.job_id / "output"
        out.mkdir(parents=True, exist_ok=True)
        total, t_write = timed(lambda: write_cohort(out, files, large=4))
        print(f"\n== {files} output files, {total / 2**20:.0f} MiB (written in {t_write:.1f} s)")

        worker = Worker(settings, engine)

        def record() -> None:
            with session_scope(engine) as s:
                job = s.get(Job, world.job_id)
                assert job is not None
                worker._finish(s, job, JobResult(JobState.succeeded, 0, "exited with code 0"))

        _, t_rec = timed(record)
        print(f"worker: recording the outputs        {t_rec:7.2f} s")

        app = with_egress_routes(create_app(settings, engine))
        issuer = TokenIssuer.from_settings(settings)
        staff = {"Authorization": f"Bearer {issuer.mint('audrey', ['auditor'])}"}
        alice = {"Authorization": f"Bearer {issuer.mint(world.researcher, ['researcher'])}"}
        url = f"/api/v1/jobs/{world.job_id}/outputs"
        with TestClient(app) as client:
            for who, headers in (("staff", staff), ("researcher", alice)):
                r, t_first = timed(lambda h=headers: client.get(url, headers=h))  # type: ignore[misc]
                r.raise_for_status()
                print(
                    f"GET outputs, default answer ({who}) {t_first:7.2f} s  {len(r.json())} rows, "
                    f"{len(r.content) / 2**20:.2f} MB"
                )
                r, t_again = timed(lambda h=headers: client.get(url, headers=h))  # type: ignore[misc]
                print(f"GET outputs, same again ({who})     {t_again:7.2f} s")
                rows, size, t_all = pages(client, url, headers)
                print(
                    f"every page of 1000 ({who})          {t_all:7.2f} s  {rows} rows, {size / 2**20:.2f} MB"
                )
            wanted = "series/00007/image.json"
            digest = hashlib.sha256((out / wanted).read_bytes()).hexdigest()
            # A researcher names it by the keyed handle they were shown (tre.jobs.output_handles).
            handle = output_handle(handle_key(settings.keys_dir), world.job_id, digest)
            listing = client.get(url, headers=staff).json()
            index = next((o["index"] for o in listing if o["path"] == wanted), 0)
            for label, name in (
                ("by name", wanted),
                ("by #index", f"#{index}"),
                ("by handle", f"sha256:{handle}"),
            ):
                r, t_req = timed(
                    lambda n=name: client.post(  # type: ignore[misc]
                        "/api/v1/egress/requests",
                        headers=alice,
                        json={"job_id": world.job_id, "files": [n], "justification": "one series"},
                    )
                )
                assert r.status_code == 201, r.text
                print(f"egress request, one file {label:10s} {t_req:7.2f} s")
        engine.dispose()
        session_factory(engine)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory so far          {rss:7.0f} MB")


SANDBOX_JOB = """
import os
n = {files}
for i in range((n - 1) // 2):
    d = f'/output/series/{{i:05d}}'
    os.makedirs(d)
    with open(d + '/image.nii.gz', 'wb') as f:
        f.write(i.to_bytes(4, 'big') * 256)
    with open(d + '/image.json', 'w') as f:
        f.write('{{"series": %d}}\\n' % i)
open('/output/manifest.json', 'w').write('{{}}')
"""


def sandbox_run(files: int) -> None:
    """The same tree written by a real job in the local sandbox (bubblewrap, the job's own
    ext4 /output), then copied out by the executor: what the worker records is that copy."""
    from tests.sandbox.conftest import Sandbox
    from tre.executors.local import LocalExecutor
    from tre.jobs.outputs import scan_output_tree

    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Sandbox(Path(tmp), LocalExecutor(images_dir=Path(tmp) / "images", host_toolchain=True))
        job, t_job = timed(
            lambda: sandbox.run(SANDBOX_JOB.format(files=files), output_limit_mb=1024, time_limit_s=600)
        )
        scan, t_scan = timed(lambda: scan_output_tree(job.spec.output_dir, max_files=100_000))
        print(
            f"\n== sandbox job writing {files} files: {job.result.state} ({job.result.reason}) "
            f"in {t_job:.1f} s with the copy out; scan + hash {len(scan.files)} files {t_scan:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--sandbox", action="store_true", help="also time a real sandbox job writing them")
    args = parser.parse_args()
    for n in args.files:
        if args.sandbox:
            sandbox_run(n)
        run(n)


if __name__ == "__main__":
    main()
