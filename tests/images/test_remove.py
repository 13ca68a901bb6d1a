"""Removing images (`DELETE /api/v1/images/{digest}`, `tre image rm`): who may, what is
refused, what is freed, and what a concurrent import of the same image or of one sharing its
layers sees. Real images (hand-built layer tars and busybox built with umoci), real imports
through the API, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.images.conftest import require_tools
from tests.images.imagekit import add_file, crafted_docker_archive, layer_tar
from tests.worlds import WorldFactory
from tre.api.app import create_app
from tre.api.routers.images import _record_import
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import Conflict
from tre.images import catalog
from tre.images.layout import verify_layout
from tre.images.store import ImageStore
from tre.server import BackgroundServer
from tre.states import JobState
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Image, ImageImport, Job

USERS = {
    "root": ["admin"],
    "alice": ["researcher"],
    "bob": ["researcher"],
    "dana": ["dac"],
    "audrey": ["auditor"],
}
SHARED = os.urandom(256 << 10)  # the layer two images have in common: 256 KiB of noise


def _archives(tmp: Path) -> tuple[Path, Path]:
    """Two images with the same first layer (same bytes, same digest) and one own layer each."""
    base = layer_tar(lambda t: add_file(t, "lib/shared.bin", SHARED))
    a = crafted_docker_archive(
        tmp / "a.tar", [base, layer_tar(lambda t: add_file(t, "a.txt", b"A"))], tag="lab/a:1"
    )
    b = crafted_docker_archive(
        tmp / "b.tar", [base, layer_tar(lambda t: add_file(t, "b.txt", b"B"))], tag="lab/b:1"
    )
    return a, b


@pytest.fixture
def tre(settings: Settings, engine_any: Engine, token_for, tmp_path: Path) -> Iterator[dict[str, object]]:  # type: ignore[no-untyped-def]
    require_tools()
    with session_scope(engine_any) as s:
        make = WorldFactory(s)
        make.users(USERS)
        make.project("p1", "Project one", ["alice"])
        make.project("p2", "Project two", ["bob"])
    headers = {u: {"Authorization": f"Bearer {token_for(u, *roles)}"} for u, roles in USERS.items()}
    a, b = _archives(tmp_path)
    with TestClient(create_app(settings, engine_any)) as client:
        yield {"client": client, "h": headers, "a": a, "b": b, "engine": engine_any}


def _import(client: TestClient, headers: dict[str, str], archive: Path) -> dict:  # type: ignore[type-arg]
    r = client.post("/api/v1/images", headers=headers, content=archive.read_bytes())
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _rm(client: TestClient, headers: dict[str, str], digest: str) -> httpx.Response:
    return client.delete(f"/api/v1/images/{digest}", headers=headers)


def test_who_may_remove_what_and_what_is_freed(tre, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    client, h, engine = tre["client"], tre["h"], tre["engine"]
    store = ImageStore(settings)
    a = _import(client, h["alice"], tre["a"])
    assert _import(client, h["bob"], tre["a"])["digest"] == a["digest"]  # the same bytes: one copy
    b = _import(client, h["alice"], tre["b"])
    with session_scope(engine) as s:
        alice_before = catalog.stored_by(s, "alice")[0]
        assert catalog.stored_by(s, "bob")[0] == a["size"] + a["unpacked_size"]

    # Deny by default: staff without the importer role, and researchers for others' imports.
    for who in ("dana", "audrey"):
        assert _rm(client, h[who], a["digest"]).status_code == 403
    r = _rm(client, h["bob"], b["digest"])
    assert r.status_code == 404 and "imported by you" in r.json()["detail"]
    assert _rm(client, h["alice"], "sha256:" + "0" * 64).status_code == 404
    assert _rm(client, h["alice"], "sha256:abc").status_code == 422
    assert _rm(client, h["alice"], "latest").status_code in (404, 405, 422)

    # Bob removes his import: alice still has the image, so it stays; his quota is free.
    r = _rm(client, h["bob"], a["digest"])
    assert r.status_code == 200, r.text
    assert r.json() == {
        "digest": a["digest"],
        "name": "lab/a",
        "removed_from_store": False,
        "freed_from_your_quota": a["size"] + a["unpacked_size"],
    }
    assert store.has(a["digest"])
    with session_scope(engine) as s:
        assert catalog.stored_by(s, "bob") == (0, 0)
        assert catalog.stored_by(s, "alice")[0] == alice_before
    assert _rm(client, h["bob"], a["digest"]).status_code == 404  # not his any more

    # Alice, the last importer: the image leaves the store, blobs and unpacked root.
    hex_a = a["digest"].removeprefix("sha256:")
    assert (store.root / "bundles" / hex_a / "rootfs" / "a.txt").is_file()
    r = _rm(client, h["alice"], a["digest"])
    assert r.status_code == 200 and r.json()["removed_from_store"] is True, r.text
    assert not store.has(a["digest"]) and not (store.root / "bundles" / hex_a).exists()
    assert not [p for p in (store.root / "tmp").iterdir()]  # the detached copy is gone too
    # The image that shares its first layer is whole: its own copy of every blob verifies,
    # and its root file system holds the shared layer's file.
    verify_layout(store.layout(b["digest"]), store.limits)
    assert (store.rootfs(b["digest"]) / "lib" / "shared.bin").read_bytes() == SHARED
    with session_scope(engine) as s:
        assert s.get(Image, a["digest"]) is None
        assert catalog.stored_by(s, "alice")[0] == b["size"] + b["unpacked_size"]
        removed = [
            json.loads(e.body)["details"]
            for e in s.scalars(
                select(AuditEntry).where(AuditEntry.action == "image.removed").order_by(AuditEntry.idx)
            )
        ]
    assert [(d["digest"], d["whole_image"], d["imports_removed"]) for d in removed] == [
        (a["digest"], False, 1),
        (a["digest"], True, 1),
    ]
    # Listed no more; a second removal is a 404, a fresh import works again.
    assert a["digest"] not in [i["digest"] for i in client.get("/api/v1/images", headers=h["alice"]).json()]
    assert _rm(client, h["alice"], a["digest"]).status_code == 404
    assert _import(client, h["alice"], tre["a"])["digest"] == a["digest"] and store.has(a["digest"])


def test_refused_while_approved_or_used_by_a_job(tre, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    client, h, engine = tre["client"], tre["h"], tre["engine"]
    store = ImageStore(settings)
    a = _import(client, h["alice"], tre["a"])
    body = {"reference": a["reference"], "project_id": "p1"}
    assert client.post("/api/v1/images/approvals", headers=h["root"], json=body).status_code == 201

    r = _rm(client, h["alice"], a["digest"])
    assert r.status_code == 409 and "approved for 1 project;" in r.json()["detail"]
    assert "p1" not in r.json()["detail"]  # a researcher learns how many, not which projects
    r = _rm(client, h["root"], a["digest"])  # an admin too: removal never revokes on its own
    assert r.status_code == 409 and "approved for project p1;" in r.json()["detail"]
    assert client.post("/api/v1/images/approvals/revoke", headers=h["root"], json=body).status_code == 200

    with session_scope(engine) as s:  # a job admitted before the revocation, still queued
        job = Job(project_id="p1", submitted_by="alice", image=a["reference"], command=["true"])
        s.add(job)
        s.flush()
        job_id = job.id
    for state in (JobState.queued, JobState.running):
        with session_scope(engine) as s:
            s.get(Job, job_id).state = state.value  # type: ignore[union-attr]
        r = _rm(client, h["alice"], a["digest"])
        assert r.status_code == 409 and "used by queued or running 1 job;" in r.json()["detail"]
        r = _rm(client, h["root"], a["digest"])
        assert r.status_code == 409 and job_id in r.json()["detail"]
    assert store.has(a["digest"])
    with session_scope(engine) as s:
        s.get(Job, job_id).state = JobState.cancelled.value  # type: ignore[union-attr]
    # An admin removes it for everyone, their imports included.
    assert _import(client, h["bob"], tre["a"])["digest"] == a["digest"]
    r = _rm(client, h["root"], a["digest"])
    assert r.status_code == 200 and r.json()["removed_from_store"] and r.json()["freed_from_your_quota"] == 0
    with session_scope(engine) as s:
        assert s.scalars(select(ImageImport).where(ImageImport.digest == a["digest"])).all() == []
        assert s.get(Job, job_id) is not None  # the history stays
    assert not store.has(a["digest"])


def test_a_reimport_placed_before_the_removal_is_refused_not_half_recorded(tre, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """Bob re-sends alice's image. His upload is verified and finds the image already in the
    store; before his import is recorded, alice removes the image (the last importer). His
    record step then finds it gone and is refused (409, send it again), instead of recording
    an image whose files are gone."""
    client, h, engine = tre["client"], tre["h"], tre["engine"]
    store = ImageStore(settings)
    a = _import(client, h["alice"], tre["a"])
    work = store.scratch()
    upload = work / "upload.tar"
    upload.write_bytes(tre["a"].read_bytes())
    result = store.import_upload(upload, None, work)  # bob's upload, verified, not yet recorded
    assert result.digest == a["digest"]
    assert _rm(client, h["alice"], a["digest"]).json()["removed_from_store"] is True
    bob = Principal("bob", frozenset({"researcher"}))
    with pytest.raises(Conflict, match="was removed while it was being imported"), session_scope(engine) as s:
        _record_import(s, settings, bob, result)
    with session_scope(engine) as s:
        assert s.get(Image, a["digest"]) is None and not store.has(a["digest"])
    assert _import(client, h["bob"], tre["a"])["digest"] == a["digest"]  # sent again: fine


def test_removal_racing_imports(settings: Settings, engine_any: Engine, token_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Real concurrency over HTTP: an admin removes image A again and again while one researcher
    re-imports A and another imports B (sharing A's first layer). After every round the
    database and the store agree (a recorded image is in the store, a removed one is not) and
    B is whole."""
    require_tools()
    engine = engine_any
    with session_scope(engine) as s:
        WorldFactory(s).users(USERS)
    h = {u: {"Authorization": f"Bearer {token_for(u, *roles)}"} for u, roles in USERS.items()}
    a, b = _archives(tmp_path)
    store = ImageStore(settings)
    with (
        BackgroundServer(create_app(settings, engine)) as server,
        httpx.Client(base_url=server.url, timeout=120) as http,
    ):
        digest_a = http.post("/api/v1/images", headers=h["alice"], content=a.read_bytes()).json()["digest"]
        outcomes: list[int] = []
        for _round in range(4):
            codes: dict[str, int] = {}

            def run(name: str, method: str, path: str, who: str, body: bytes | None = None) -> None:
                with httpx.Client(base_url=server.url, timeout=120) as c:
                    codes[name] = c.request(method, path, headers=h[who], content=body).status_code

            threads = [
                threading.Thread(target=run, args=("rm", "DELETE", f"/api/v1/images/{digest_a}", "root")),
                threading.Thread(target=run, args=("a", "POST", "/api/v1/images", "alice", a.read_bytes())),
                threading.Thread(target=run, args=("b", "POST", "/api/v1/images", "bob", b.read_bytes())),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
            assert codes["rm"] in (200, 404) and codes["a"] in (201, 409) and codes["b"] == 201, codes
            outcomes.append(codes["rm"])
            with session_scope(engine) as s:
                recorded = {i.digest for i in s.scalars(select(Image))}
                for digest in recorded:
                    assert store.has(digest), f"{digest} recorded but not in the store ({codes})"
                    assert (
                        s.scalars(select(ImageImport).where(ImageImport.digest == digest)).first() is not None
                    )
            if digest_a not in recorded:
                assert not store.has(digest_a), codes
                assert (
                    http.post("/api/v1/images", headers=h["alice"], content=a.read_bytes()).status_code == 201
                )
            digest_b = next(d for d in recorded if d != digest_a)
            verify_layout(store.layout(digest_b), store.limits)
            assert (store.rootfs(digest_b) / "lib" / "shared.bin").read_bytes() == SHARED
        assert 200 in outcomes


@pytest.fixture
def live(settings, engine, world, token_for) -> Iterator[dict[str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    require_tools()
    with BackgroundServer(create_app(settings, engine)) as server:
        base = {**os.environ, "TRE_HOME": str(settings.home), "TRE_API_URL": server.url, "COLUMNS": "250"}
        yield {who: {**base, "TRE_TOKEN": token_for(who, *roles)} for who, roles in USERS.items()}


def _tre(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_tre_image_rm(live, settings: Settings, busybox_docker_tar: Path) -> None:  # type: ignore[no-untyped-def]
    alice, bob, root = live["alice"], live["bob"], live["root"]
    proc = _tre(alice, "image", "import", str(busybox_docker_tar))
    assert proc.returncode == 0, proc.stderr
    ref = proc.stdout.split("imported ")[1].split()[0]
    digest = ref.split("@")[1]
    assert _tre(bob, "image", "import", str(busybox_docker_tar)).returncode == 0
    proc = _tre(bob, "image", "rm", digest[:15])  # a unique prefix, as `tre image list` shows
    assert proc.returncode == 0, proc.stderr
    assert "removed your import of" in proc.stdout and "stays in the store" in proc.stdout
    assert "of your image quota" in proc.stdout
    _one_line_error(_tre(bob, "image", "rm", ref), "imported by you")  # not his any more

    assert _tre(root, "image", "approve", ref, "--project", "p1").returncode == 0
    _one_line_error(_tre(alice, "image", "rm", ref), "Conflict", "revokes the approvals first")
    assert _tre(root, "image", "revoke", ref, "--project", "p1").returncode == 0
    proc = _tre(alice, "image", "rm", ref)
    assert proc.returncode == 0 and "from the image store" in proc.stdout, proc.stderr
    assert not ImageStore(settings).has(digest)
    _one_line_error(_tre(alice, "image", "rm", ref), "Not found", "imported by you")
