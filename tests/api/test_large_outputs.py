"""A job with a very large output (a preprocessed cohort: tens of thousands of files).

The mechanism is tested on a few thousand outputs; the 10,000 and 50,000-file figures are
in `benchmarks/bench_large_outputs.py` (docs/api.md, "Jobs with very large outputs"):

* the worker records every output with one batch of audit appends (one checkpoint), not one
  append per file (~9 ms each and growing: 93 s for 10,000 files);
* ``GET /jobs/{id}/outputs`` answers a bounded page in index order with ``X-Total-Count`` and
  ``X-Next-Offset``, by the same number of SQL statements for 50 outputs as for 2,500, and
  the researcher's name screening is done once per job, not once per page;
* an egress request names one file among thousands (path, ``#index``, ``sha256:``) with the
  same number of statements as among 50;
* `tre outputs` prints one page and says on stderr how many there are and how to see more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from egress_review.logscreen import LogScreen
from tests.worlds import WorldFactory
from tre.auth.user_cache import UserAccessCache
from tre.executors.base import JobResult
from tre.jobs.output_handles import handle_key, output_handle
from tre.jobs.worker import Worker
from tre.store.db import session_scope
from tre.store.models import AuditCheckpoint, AuditEntry, EgressRequest, Job, JobOutput, JobState

POLICY = """\
name: cohort
version: "1"
job:
  allowed_images: ["registry.tre.local/*@sha256:*"]
  max_output_files: 100000
  max_output_name_chars: 1024
"""


@pytest.fixture
def cohort_settings(settings: Any, tmp_path: Path) -> Any:
    """The repository's policies plus one that records a cohort's outputs (default: 200)."""
    folder = tmp_path / "policies"
    folder.mkdir()
    for source in Path(settings.policies_dir).glob("*.yaml"):
        (folder / source.name).write_text(source.read_text())
    (folder / "cohort.yaml").write_text(POLICY)
    settings.policies_dir = folder
    return settings


def _cohort(n: int) -> dict[str, bytes]:
    files = {f"series/{i:05d}/image.json": f'{{"series": {i}}}\n'.encode() for i in range(n - 1)}
    files["manifest.json"] = b'{"version": 1}\n'
    return files


def _job(engine: Engine, settings: Any, n: int, dataset: str = "cohort-ds") -> str:
    with session_scope(engine) as s:
        return WorldFactory(s).finished_job(settings, "p1", "alice", [dataset], _cohort(n))


@pytest.fixture
def cohort_world(world: Any, engine: Engine, cohort_settings: Any) -> Any:
    with session_scope(engine) as s:
        make = WorldFactory(s)
        make.dataset("cohort-ds", world.data_dir, "cohort", policy="cohort")
        make.grant("p1", "cohort-ds", days=1)
        make.users({"dave": ["dac"]})
    return world


@pytest.fixture(autouse=True)
def _user_cache_outlives_the_test(app: Any) -> None:
    """The counts compare one request's own lookups, not when the user cache's 5 s expire.

    Under load (CI with three helpers: listing 2,500 outputs twice took over 5 s) the
    caller's cached roles expired between the two jobs' requests, and the large job's request
    read the user and their roles again: 73 statements against 71, a failure of the clock.
    """
    app.state.user_cache = UserAccessCache(ttl_s=3600.0)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith("PRAGMA"):  # a fresh pooled SQLite connection's settings
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _all_pages(client: Any, job_id: str, headers: dict[str, str], limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    offset: str | None = "0"
    while offset is not None:
        r = client.get(
            f"/api/v1/jobs/{job_id}/outputs", params={"limit": limit, "offset": offset}, headers=headers
        )
        assert r.status_code == 200, r.text
        assert int(r.headers["X-Total-Count"]) in (50, 2500)
        assert len(r.json()) <= limit
        rows.extend(r.json())
        offset = r.headers.get("X-Next-Offset")
    return rows


def test_outputs_are_paged_in_index_order_with_a_bounded_answer(
    app_client, cohort_world, engine, cohort_settings
):  # type: ignore[no-untyped-def]
    job_id = _job(engine, cohort_settings, 2500)
    staff, alice = cohort_world.headers["audrey"], cohort_world.headers["alice"]
    first = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=staff)
    assert first.status_code == 200
    # The default answer is one page of 1,000, not all 2,500 (50,000 in a cohort).
    assert len(first.json()) == 1000 and first.headers["X-Next-Offset"] == "1000"
    assert len(first.content) < 200_000
    pages = _all_pages(app_client, job_id, staff, 700)
    assert [o["index"] for o in pages] == list(range(2500))
    with session_scope(engine) as s:
        rows = list(s.scalars(select(JobOutput).where(JobOutput.job_id == job_id)))
    key = handle_key(cohort_settings.keys_dir)
    # Staff see the real hashes, in the order of their keyed handles.
    assert [o["sha256"] for o in pages] == sorted(
        (o.sha256 for o in rows), key=lambda h: output_handle(key, job_id, h)
    )
    assert not any(o["sha256_keyed"] for o in pages)
    assert {o["path"] for o in pages} == {o.path for o in rows}
    # The researcher sees the same indexes and sizes, page by page, and handles for hashes.
    mine = _all_pages(app_client, job_id, alice, 1000)
    assert [(o["index"], o["sha256"]) for o in mine] == [
        (o["index"], output_handle(key, job_id, o["sha256"])) for o in pages
    ]
    assert all(o["sha256_keyed"] for o in mine)
    assert any(o["path"] == "manifest.json" for o in mine)
    # Past the end: an empty page, still with the count.
    end = app_client.get(f"/api/v1/jobs/{job_id}/outputs", params={"offset": 2500}, headers=staff)
    assert end.json() == [] and "X-Next-Offset" not in end.headers
    assert (
        app_client.get(f"/api/v1/jobs/{job_id}/outputs", params={"limit": 1001}, headers=staff).status_code
        == 422
    )


def test_a_page_costs_the_same_statements_for_50_outputs_as_for_2500(
    app_client, cohort_world, engine, cohort_settings, monkeypatch
):  # type: ignore[no-untyped-def]
    warm, small, large = (_job(engine, cohort_settings, n) for n in (5, 50, 2500))
    screened: list[int] = []
    original = LogScreen.screen_log

    def spy(self: LogScreen, data: bytes, *args: Any, **kw: Any) -> Any:
        screened.append(data.count(b"\n"))
        return original(self, data, *args, **kw)

    monkeypatch.setattr(LogScreen, "screen_log", spy)
    for who in ("audrey", "alice"):
        headers = cohort_world.headers[who]
        counts = []
        for job_id in (warm, small, large, large):
            with statements(engine) as seen:
                r = app_client.get(
                    f"/api/v1/jobs/{job_id}/outputs", params={"offset": 10, "limit": 20}, headers=headers
                )
            assert r.status_code == 200
            assert [o["index"] for o in r.json()] == (list(range(10, 30)) if job_id != warm else [])
            counts.append(len(seen))
        # (The first read warms the caller's caches; a second read of a job is audited once.)
        assert counts[1] == counts[2] >= counts[3], (who, counts)
    # The researcher's names were screened once per job (all of them together), not per page.
    assert screened == [5, 50, 2500]


def test_an_egress_request_names_one_file_among_thousands_by_indexed_lookups(
    app_client, cohort_world, engine, cohort_settings
):  # type: ignore[no-untyped-def]
    small, large = _job(engine, cohort_settings, 50), _job(engine, cohort_settings, 2500)
    alice = cohort_world.headers["alice"]
    wanted = "series/00007/image.json"
    digest = hashlib.sha256(_cohort(50)[wanted]).hexdigest()
    counts: dict[tuple[str, str], int] = {}
    for job_id in (small, large):
        # Both jobs listed once by each, so both start with the same caches warm.
        _all_pages(app_client, job_id, alice, 1000)
        listing = _all_pages(app_client, job_id, cohort_world.headers["audrey"], 1000)
        index = next(o["index"] for o in listing if o["path"] == wanted)
        handle = output_handle(handle_key(cohort_settings.keys_dir), job_id, digest)
        for label, name in (("path", wanted), ("index", f"#{index}"), ("hash", f"sha256:{handle}")):
            with statements(engine) as seen:
                r = app_client.post(
                    "/api/v1/egress/requests",
                    headers=alice,
                    json={"job_id": job_id, "files": [name], "justification": "one series"},
                )
            assert r.status_code == 201, r.text
            assert [f["path"] for f in r.json()["files"]] == [wanted]
            counts[(job_id, label)] = len(seen)
    for label in ("path", "index", "hash"):
        assert counts[(large, label)] <= counts[(small, label)], counts
    r = app_client.post(
        "/api/v1/egress/requests",
        headers=alice,
        json={"job_id": large, "files": ["#2500"], "justification": "past the end"},
    )
    assert r.status_code == 422 and "not-a-job-output" in r.json()["type"]


def test_the_worker_records_thousands_of_outputs_with_one_batch_of_audit_appends(
    cohort_world, engine, cohort_settings
):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        job_id = WorldFactory(s).finished_job(
            cohort_settings, "p1", "alice", ["cohort-ds"], _cohort(2000), state=JobState.running.value
        )
        s.query(JobOutput).filter(JobOutput.job_id == job_id).delete()
    with session_scope(engine) as s:
        checkpoints = s.scalar(select(func.count()).select_from(AuditCheckpoint))
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        Worker(cohort_settings, engine)._finish(
            s, job, JobResult(JobState.succeeded, 0, "exited with code 0")
        )
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == "succeeded" and "not recorded" not in job.reason
        assert s.scalar(select(func.count()).select_from(JobOutput).where(JobOutput.job_id == job_id)) == 2000
        recorded = s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.job_id == job_id, AuditEntry.action == "job.output_recorded")
        )
        assert recorded == 2000
        # One checkpoint for the outputs' batch and one for the job's end (not 2,000).
        assert s.scalar(select(func.count()).select_from(AuditCheckpoint)) - checkpoints <= 3


def test_tre_outputs_prints_a_page_and_says_how_many_there_are(
    app_client, cohort_world, engine, cohort_settings, token_for
):  # type: ignore[no-untyped-def]
    import os

    from tests.api.test_cli_for_people import tre
    from tre.api.app import create_app
    from tre.server import BackgroundServer

    job_id = _job(engine, cohort_settings, 1200)
    with BackgroundServer(create_app(cohort_settings, engine)) as server:
        env = {k: v for k, v in os.environ.items() if k != "TRE_TOKEN"}
        env.update(
            TRE_HOME=str(cohort_settings.home),
            TRE_API_URL=server.url,
            TRE_TOKEN=token_for("alice", "researcher"),
        )
        first = tre(env, "outputs", job_id[:8])
        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        assert lines[0].split("\t") == ["#", "path", "size", "handle"] and len(lines) == 1 + 100
        assert [line.split("\t")[0] for line in lines[1:]] == [f"#{i}" for i in range(100)]
        assert (
            first.stderr.strip() == "outputs #0-#99 of 1200; --page 2 for the next 100 (--all for every one)"
        )

        last = tre(env, "outputs", job_id, "--limit", "500", "--page", "3")
        assert last.returncode == 0, last.stderr
        assert [line.split("\t")[0] for line in last.stdout.splitlines()[1:]] == [
            f"#{i}" for i in range(1000, 1200)
        ]
        assert last.stderr.strip() == "outputs #1000-#1199 of 1200 (--all for every one)"

        every = tre(env, "outputs", job_id, "--all", "--json")
        assert every.returncode == 0 and every.stderr == ""
        assert [o["index"] for o in json.loads(every.stdout)] == list(range(1200))

        bad = tre(env, "outputs", job_id, "--limit", "5000")
        assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_a_request_over_the_policys_limits_is_refused_before_anything_is_copied(  # type: ignore[no-untyped-def]
    app_client, cohort_world, engine, cohort_settings
):
    job_id = _job(engine, cohort_settings, 300)
    alice = cohort_world.headers["alice"]
    staged_before = sorted(p for p in cohort_settings.staging_dir.rglob("*") if p.is_file())
    r = app_client.post(
        "/api/v1/egress/requests",
        headers=alice,
        json={"job_id": job_id, "files": [f"#{i}" for i in range(51)], "justification": "the whole cohort"},
    )
    # The policy allows 50 files per request (files.max_files): refused, not copied and checked.
    assert r.status_code == 422 and r.json()["type"].endswith("request-over-limits"), r.text
    assert "51 files" in r.json()["detail"] and "at most 50 files" in r.json()["detail"]
    assert sorted(p for p in cohort_settings.staging_dir.rglob("*") if p.is_file()) == staged_before
    with session_scope(engine) as s:
        assert (
            s.scalar(select(func.count()).select_from(EgressRequest).where(EgressRequest.job_id == job_id))
            == 0
        )
    r = app_client.post(
        "/api/v1/egress/requests",
        headers=alice,
        json={"job_id": job_id, "files": [f"#{i}" for i in range(50)], "justification": "fifty series"},
    )
    assert r.status_code == 201, r.text


def test_index_order_and_lookups_agree_on_sqlite_and_postgresql(engine_any, settings):  # type: ignore[no-untyped-def]
    """The index is the position in (keyed handle, id) order, the same on both databases, and
    every lookup agrees: by index, by handle, by path; by the real hash only for staff (for a
    researcher it is refused like an unknown handle: a guessing oracle otherwise)."""
    from egress_review import outputnames
    from tre.jobs.output_handles import handle_key, output_handle

    with session_scope(engine_any) as s:
        make = WorldFactory(s)
        make.users({"alice": ["researcher"]})
        make.project("p1", "Project one", ["alice"])
        outputs = {f"series/{i:04d}.json": f"{i}".encode() for i in range(300)}
        outputs["twin-a.json"] = outputs["twin-b.json"] = b"same bytes"
        job_id = make.finished_job(settings, "p1", "alice", [], outputs)
    with session_scope(engine_any) as s:
        rows = list(s.scalars(select(JobOutput).where(JobOutput.job_id == job_id)))
        key = handle_key(settings.keys_dir)
        expected = [o.path for o in sorted(rows, key=lambda o: (output_handle(key, job_id, o.sha256), o.id))]
        by_real = [o.path for o in sorted(rows, key=lambda o: (o.sha256, o.id))]
        assert expected != by_real  # not the real hashes' order (1 in 302! otherwise)
        keys = settings.keys_dir
        paged = [
            o.path for off in range(0, 302, 64) for o in outputnames.output_page(s, keys, job_id, off, 64)
        ]
        assert paged == expected and outputnames.output_stamp(s, job_id)[0] == 302

        def resolve(wanted: str, real: bool = False) -> JobOutput | None:
            return outputnames.resolve_recorded(s, keys, job_id, wanted, real_hashes=real)

        for i in (0, 150, 301):
            found = resolve(f"#{i}")
            assert found is not None and found.path == expected[i]
        assert resolve("#302") is None
        twin = hashlib.sha256(b"same bytes").hexdigest()
        first_twin = expected[[p.startswith("twin") for p in expected].index(True)]
        found = resolve(f"sha256:{output_handle(key, job_id, twin)}")
        assert found is not None and found.path == first_twin
        assert resolve(f"sha256:{twin}") is None  # a researcher never saw the real hash
        found = resolve(f"sha256:{twin}", real=True)
        assert found is not None and found.path == first_twin
        assert resolve(f"sha256:{'0' * 64}", real=True) is None
        found = resolve("series/0042.json")
        assert found is not None and found.sha256 == hashlib.sha256(b"42").hexdigest()
        assert resolve("series/9999.json") is None


TIGHT_LOG = """\
name: tight-log
version: "1"
job:
  allowed_images: ["registry.tre.local/*@sha256:*"]
  max_output_files: 100000
  researcher_log_limit_kib: 1
"""


def test_names_past_the_log_budget_are_still_screened_one_by_one(  # type: ignore[no-untyped-def]
    app_client, cohort_world, engine, cohort_settings
):
    """The names are judged like a log, but the log's per-job byte budget (here 1 KiB; by
    default 256 KiB, about 10,000 cohort names) is not theirs: past it every name of the job
    was withheld from the researcher. Names that carry an identifier are still withheld."""
    import pydicom
    from pydicom.data import get_testdata_file

    (Path(cohort_settings.policies_dir) / "tight-log.yaml").write_text(TIGHT_LOG)
    patient = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)
    with session_scope(engine) as s:
        make = WorldFactory(s)
        make.dataset("tight-ds", cohort_world.data_dir, "tight", policy="tight-log")
        make.grant("p1", "tight-ds", days=1)
        outputs = _cohort(300)
        outputs[f"notes/{patient}.txt"] = b"x"
        job_id = WorldFactory(s).finished_job(cohort_settings, "p1", "alice", ["tight-ds"], outputs)
    mine = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=cohort_world.headers["alice"]).json()
    assert len(mine) == 301
    withheld = [o for o in mine if o["name_withheld"]]
    assert len(withheld) == 1 and withheld[0]["path"] is None
    assert {o["path"] for o in mine if not o["name_withheld"]} == set(_cohort(300))
