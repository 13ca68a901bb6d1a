"""Code over the API: upload bounded by the project's quota and refused with a reason, jobs
that may only run their own project's code, the hash on the job and in the audit log, and
who may list and download the exact archive a job ran (audited)."""

from __future__ import annotations

import hashlib
import json
import os

from sqlalchemy import select

from tests.code.hostile import file, folder, link, targz
from tests.worlds import job_body
from tre.code.store import CodeStore
from tre.store.db import session_scope
from tre.store.models import AuditEntry, CodeUpload

CODE = targz(folder("lib"), file("lib/stats.py", b"N = 3\n"), file("analysis.py", b"import lib.stats\n"))
GZ = {"Content-Type": "application/gzip"}


def _upload(client, world, data: bytes, who: str = "alice", project: str = "p1"):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/code", params={"project_id": project}, content=data, headers={**world.headers[who], **GZ}
    )


def _problem(resp, status: int) -> str:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    return str(resp.json()["detail"])


def _audit(engine, action: str) -> list[dict]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return [json.loads(e.body) for e in s.scalars(select(AuditEntry).where(AuditEntry.action == action))]


def test_upload_is_stored_once_and_audited(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    r = _upload(app_client, world, CODE)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["sha256"] == hashlib.sha256(CODE).hexdigest()
    assert (body["entries"], body["size"], body["already_stored"]) == (3, len(CODE), False)
    again = _upload(app_client, world, CODE)
    assert again.status_code == 201 and again.json()["already_stored"] is True
    store = CodeStore(settings)
    assert os.listdir(store.archives) == [f"{body['sha256']}.tar.gz"]
    uploads = _audit(engine, "code.uploaded")
    assert [u["details"]["code_hash"] for u in uploads] == [body["sha256"]] * 2
    assert [u["details"]["already_stored"] for u in uploads] == [False, True]


def test_upload_refusals(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    # Not a member of p1, unknown project, no token, wrong role, wrong media type.
    assert "no project 'p1'" in _problem(_upload(app_client, world, CODE, who="bob"), 404)
    assert "no project 'nope'" in _problem(_upload(app_client, world, CODE, project="nope"), 404)
    assert (
        app_client.post("/api/v1/code", params={"project_id": "p1"}, content=CODE, headers=GZ).status_code
        == 401
    )
    _problem(_upload(app_client, world, CODE, who="dana"), 403)
    wrong = app_client.post(
        "/api/v1/code",
        params={"project_id": "p1"},
        content=CODE,
        headers={**world.headers["alice"], "Content-Type": "application/json"},
    )
    assert "application/gzip" in _problem(wrong, 415)
    # Hostile content: one-line reasons, nothing stored.
    assert "points to an absolute path" in _problem(_upload(app_client, world, targz(link("x", "/etc"))), 422)
    assert "contains '..'" in _problem(_upload(app_client, world, targz(file("../x.py"))), 422)
    lookalikes = targz(file("Analysis.py"), file("analysis.py"))  # redteam round 15
    assert "differ only in letter case" in _problem(_upload(app_client, world, lookalikes), 422)
    override = _problem(_upload(app_client, world, targz(file("report\u202egnp.py"))), 422)
    assert "control characters" in override and "\u202e" not in override
    # Quota: an admin lowers it, a 2 MiB archive of noise is then too large.
    r = app_client.patch("/api/v1/projects/p1/quota", headers=world.headers["root"], json={"max_code_mb": 1})
    assert r.status_code == 200 and r.json()["max_code_mb"] == 1 and r.json()["max_code_files"] == 10_000
    assert (
        app_client.patch(
            "/api/v1/projects/p1/quota", headers=world.headers["alice"], json={"max_code_mb": 100}
        ).status_code
        == 403
    )
    noise = targz(file("noise.bin", os.urandom(2 << 20)))
    assert "larger than 1 MiB, the project's quota" in _problem(_upload(app_client, world, noise), 413)
    r = app_client.patch(
        "/api/v1/projects/p1/quota", headers=world.headers["root"], json={"max_code_files": 2}
    )
    assert "more than 2 entries" in _problem(_upload(app_client, world, CODE), 413)
    store = CodeStore(settings)
    assert [p for d in (store.archives, store.trees, store.incoming) for p in d.iterdir()] == []
    with session_scope(engine) as s:
        assert s.scalars(select(CodeUpload)).all() == []
    changed = _audit(engine, "admin.project_quota_changed")
    assert changed[-1]["details"]["after"]["max_code_files"] == 2


def test_job_runs_only_its_own_projects_code_and_records_the_hash(app_client, world, engine) -> None:  # type: ignore[no-untyped-def]
    sha = _upload(app_client, world, CODE).json()["sha256"]
    r = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body(code_hash=sha))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["code_hash"] == sha
    assert (
        app_client.get(f"/api/v1/jobs/{job['id']}", headers=world.headers["alice"]).json()["code_hash"] == sha
    )
    submitted = [e for e in _audit(engine, "job.submitted") if e["job_id"] == job["id"]]
    assert submitted[0]["details"]["code_hash"] == sha
    # Knowing the hash is not enough: p2 never uploaded it.
    from datetime import timedelta

    from tests.worlds import WorldFactory
    from tre import registry
    from tre.store.base import utcnow

    with session_scope(engine) as s:
        registry.grant_access(s, "root", "p2", "ct1", expires_at=utcnow() + timedelta(days=1))
        WorldFactory(s).approve_image("p2")
    r = app_client.post(
        "/api/v1/jobs", headers=world.headers["bob"], json=job_body(project_id="p2", code_hash=sha)
    )
    assert "was not uploaded to project 'p2'" in _problem(r, 403)
    r = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body(code_hash="0" * 64))
    assert "was not uploaded to project 'p1'" in _problem(r, 403)
    assert _problem(
        app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body(code_hash="../../etc")),
        422,
    )
    denied = _audit(engine, "job.denied")
    assert {d["details"]["code_hash"] for d in denied} == {sha, "0" * 64}
    # A quota lowered after the upload applies to later submissions.
    app_client.patch("/api/v1/projects/p1/quota", headers=world.headers["root"], json={"max_code_files": 2})
    r = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body(code_hash=sha))
    assert "more entries than project 'p1' quota of 2" in _problem(r, 403)


def test_who_may_read_a_jobs_code(app_client, world, engine) -> None:  # type: ignore[no-untyped-def]
    sha = _upload(app_client, world, CODE).json()["sha256"]
    job_id = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json=job_body(code_hash=sha)
    ).json()["id"]
    plain = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    for who in ("alice", "dana", "audrey", "root"):
        r = app_client.get(f"/api/v1/jobs/{job_id}/code", headers=world.headers[who])
        assert r.status_code == 200, (who, r.text)
        assert r.content == CODE and r.headers["x-code-sha256"] == sha
        assert r.headers["content-type"] == "application/gzip"
        listing = app_client.get(f"/api/v1/jobs/{job_id}/code/files", headers=world.headers[who]).json()
        assert listing["code_hash"] == sha
        assert [(e["path"], e["kind"], e["size"]) for e in listing["entries"]] == [
            ("lib", "dir", 0),
            ("lib/stats.py", "file", 6),
            ("analysis.py", "file", 17),
        ]
    # A researcher of another project gets the same 404 as for a job that does not exist.
    for path in (f"/api/v1/jobs/{job_id}/code", f"/api/v1/jobs/{job_id}/code/files"):
        assert _problem(app_client.get(path, headers=world.headers["bob"]), 404) == f"no job {job_id!r}"
        assert _problem(app_client.get(path.replace(job_id, "nope"), headers=world.headers["bob"]), 404) == (
            "no job 'nope'"
        )
        assert app_client.get(path).status_code == 401
    assert "ran without a code archive" in _problem(
        app_client.get(f"/api/v1/jobs/{plain}/code", headers=world.headers["dana"]), 404
    )
    reads = _audit(engine, "job.code_read")
    assert sorted({(r["actor"], r["details"]["read"]) for r in reads}) == sorted(
        (who, what) for who in ("alice", "dana", "audrey", "root") for what in ("archive", "listing")
    )
    assert {r["details"]["code_hash"] for r in reads} == {sha}


def test_over_quota_upload_is_refused_mid_stream_by_a_live_server(app, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    """Streamed without a length (chunked) or with one: 413 with a reason, nothing kept."""
    import httpx

    from tre.server import BackgroundServer

    with session_scope(engine) as s:
        from tre import registry

        registry.set_quota(s, "root", "p1", {"max_code_mb": 1})
    body = targz(file("w.bin", os.urandom(3 << 20)))

    def chunks():  # type: ignore[no-untyped-def]
        for k in range(0, len(body), 65536):
            yield body[k : k + 65536]

    with BackgroundServer(app) as server:
        for content in (chunks(), body):
            r = httpx.post(
                f"{server.url}/api/v1/code",
                params={"project_id": "p1"},
                content=content,
                headers={**world.headers["alice"], **GZ},
                timeout=30,
            )
            assert "larger than 1 MiB, the project's quota" in _problem(r, 413)
    store = CodeStore(settings)
    assert [p for d in (store.archives, store.trees, store.incoming) for p in d.iterdir()] == []


def test_a_slow_upload_holds_no_write_lock(app, world, engine) -> None:  # type: ignore[no-untyped-def]
    """While an upload's body is still arriving, other writers (a job submission) go ahead:
    the upload only writes once the archive is in. Before, it held the write gate and
    SQLite's writer lock for the whole upload, and every submission of every API process
    failed with 503 after the busy timeout."""
    import asyncio

    import httpx

    async def scenario() -> tuple[int, int, list[str]]:
        half = len(CODE) // 2
        submitted = asyncio.Event()
        order: list[str] = []

        async def body():  # type: ignore[no-untyped-def]
            yield CODE[:half]
            await submitted.wait()  # the rest arrives only after the submission finished
            order.append("upload body done")
            yield CODE[half:]

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            upload = asyncio.create_task(
                client.post(
                    "/api/v1/code",
                    params={"project_id": "p1"},
                    content=body(),
                    headers={**world.headers["alice"], **GZ},
                )
            )
            await asyncio.sleep(0)  # the upload starts and waits for the rest of its body
            job = await asyncio.wait_for(
                client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()), 20
            )
            order.append("submission answered")
            submitted.set()
            up = await asyncio.wait_for(upload, 20)
        return job.status_code, up.status_code, order

    job_status, upload_status, order = asyncio.run(scenario())
    assert job_status == 201
    assert upload_status == 201
    assert order == ["submission answered", "upload body done"]
    assert [u["details"]["code_hash"] for u in _audit(engine, "code.uploaded")] == [
        hashlib.sha256(CODE).hexdigest()
    ]


def test_already_stored_answers_for_the_uploaders_project_only(app_client, world, engine) -> None:  # type: ignore[no-untyped-def]
    """The store is shared and content-addressed; whether another project holds the same
    archive is not the uploader's to learn (bob in p2 re-sends alice's exact p1 archive)."""
    first = _upload(app_client, world, CODE)
    assert first.status_code == 201 and first.json()["already_stored"] is False
    other = _upload(app_client, world, CODE, who="bob", project="p2")
    assert other.status_code == 201, other.text
    assert other.json()["already_stored"] is False
    assert _upload(app_client, world, CODE, who="bob", project="p2").json()["already_stored"] is True
    # Staff still see that the bytes were shared, in the audit log.
    details = [u["details"] for u in _audit(engine, "code.uploaded")]
    assert [(d["already_stored"], d["already_in_project"]) for d in details] == [
        (False, False),
        (True, False),
        (True, True),
    ]
