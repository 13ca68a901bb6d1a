"""The image store is shared and content-addressed: what one researcher's import tells
another, and how much of it one researcher may fill. Real imports through the API (a
busybox image built with umoci), real database."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.images.conftest import require_tools, store_is_empty
from tests.images.imagekit import add_file, crafted_docker_archive, layer_tar
from tre.api.app import create_app
from tre.images.store import ImageStore
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Image, ImageImport


def _import(client: TestClient, headers: dict[str, str], archive: Path, name: str) -> dict:  # type: ignore[type-arg]
    r = client.post("/api/v1/images", params={"name": name}, headers=headers, content=archive.read_bytes())
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_second_importer_of_the_same_bytes_never_learns_the_first(  # type: ignore[no-untyped-def]
    settings, engine, world, busybox_docker_tar: Path
) -> None:
    """bob re-sends alice's exact image: he is told of his own import (his user, his time),
    not who had it, and it is listed for him afterwards. The image keeps one reference (its
    identity for approvals and the registry), so its name is the one it was first given:
    a residual, documented in SECURITY.md."""
    require_tools()
    with TestClient(create_app(settings, engine)) as client:
        first = _import(client, world.headers["alice"], busybox_docker_tar, "alice/tumour-seg")
        second = _import(client, world.headers["bob"], busybox_docker_tar, "bob/tool")
        assert second["digest"] == first["digest"]
        assert second["imported_by"] == "bob" and second["imported_at"] != first["imported_at"]
        assert second["reference"] == first["reference"]

        def people(view: dict) -> str:  # type: ignore[type-arg]
            return json.dumps({k: v for k, v in view.items() if k not in ("reference", "name")})

        assert "alice" not in people(second)
        listed = client.get("/api/v1/images", headers=world.headers["bob"]).json()
        listed = [v for v in listed if v["imported"]]  # not the world's external approvals
        assert [(v["digest"], v["imported_by"]) for v in listed] == [(first["digest"], "bob")]
        assert "alice" not in people(listed[0])
        # Staff see the first importer, and the audit log says the bytes were shared.
        staff = client.get("/api/v1/images", headers=world.headers["root"]).json()
        assert [v["imported_by"] for v in staff if v["imported"]] == ["alice"]
    with session_scope(engine) as s:
        rows = s.scalars(select(ImageImport).order_by(ImageImport.user_id)).all()
        assert [(r.user_id, r.name) for r in rows] == [("alice", "alice/tumour-seg"), ("bob", "bob/tool")]
        details = [json.loads(e.body)["details"] for e in s.scalars(select(AuditEntry))]
        shared = [d["already_imported_by_another"] for d in details if "setuid_bits_dropped" in d]
        assert shared == [False, True]


def test_one_researchers_imports_are_bounded_and_a_refused_one_leaves_nothing(  # type: ignore[no-untyped-def]
    settings, engine, world, tmp_path: Path
) -> None:
    """Distinct images, each within every per-image bound, would otherwise fill the host's
    disk: each researcher's imports are counted (blobs plus unpacked root) against a quota."""
    require_tools()
    small = settings.model_copy(update={"image_max_store_mb_per_user": 1})
    one = crafted_docker_archive(
        tmp_path / "one.tar", [layer_tar(lambda t: add_file(t, "a", bytes(600_000)))]
    )
    two = crafted_docker_archive(
        tmp_path / "two.tar", [layer_tar(lambda t: add_file(t, "b", bytes(600_000)))]
    )
    with TestClient(create_app(small, engine)) as client:
        _import(client, world.headers["alice"], one, "one")
        r = client.post("/api/v1/images", headers=world.headers["alice"], content=two.read_bytes())
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        assert "more than 1 MiB of the image store" in r.json()["detail"]
        # Refused images leave no files; the first stays.
        with session_scope(engine) as s:
            kept = s.scalars(select(Image.digest)).all()
        store = ImageStore(small)
        assert sorted(p.name for p in (store.root / "oci").iterdir()) == [
            d.removeprefix("sha256:") for d in kept
        ]
        # Another researcher has a share of their own; an admin is not bounded.
        _import(client, world.headers["bob"], two, "two")
        _import(client, world.headers["root"], one, "again")


def test_the_image_store_is_private_to_the_service_user(store: ImageStore, busybox_oci_tar: Path) -> None:
    """Unpacked images and uploads in progress are not for other local accounts, whatever
    the state folder's own mode (bind sources reach the sandbox through staging mounts)."""
    store.import_path(busybox_oci_tar)
    for sub in (store.root, store.root / "oci", store.root / "bundles", store.root / "tmp"):
        assert stat.S_IMODE(sub.stat().st_mode) == 0o700, sub
    assert store_is_empty(ImageStore(store.settings)) is False


def test_what_a_crashed_import_left_is_swept_by_the_next(store: ImageStore, tmp_path: Path) -> None:
    """An import killed mid-way (API or worker crash) leaves its scratch folder, up to the
    upload bound each; the next import removes those older than any import can run."""
    import os
    import time

    from tre.images.store import STALE_SCRATCH_S

    store.ensure_dirs()
    old_scratch = store.root / "tmp" / "tmpcrashed"
    (old_scratch / "layout").mkdir(parents=True)
    (old_scratch / "upload.tar").write_bytes(b"x" * 1000)
    old_partial = store.root / "bundles" / (".ab" * 32 + ".partial")
    old_partial.mkdir()
    recent = store.root / "tmp" / "tmprunning"
    recent.mkdir()
    past = time.time() - STALE_SCRATCH_S - 60
    for path in (old_scratch, old_partial):
        os.utime(path, (past, past))
    fresh = store.scratch()
    assert not old_scratch.exists() and not old_partial.exists()
    assert recent.is_dir() and fresh.is_dir()


def test_one_researchers_imports_are_bounded_in_files_too(  # type: ignore[no-untyped-def]
    settings, engine, world, tmp_path: Path
) -> None:
    """Empty files cost no bytes but an inode each: images of many tiny files, each within
    the per-image file bound, would exhaust the host's inodes."""
    require_tools()
    small = settings.model_copy(update={"image_max_store_files_per_user": 50})

    def many(prefix: str) -> Path:
        def add(t):  # type: ignore[no-untyped-def]
            for i in range(30):
                add_file(t, f"{prefix}/{i}", b"")

        return crafted_docker_archive(tmp_path / f"{prefix}.tar", [layer_tar(add)])

    with TestClient(create_app(small, engine)) as client:
        assert _import(client, world.headers["alice"], many("a"), "a")["digest"]
        r = client.post("/api/v1/images", headers=world.headers["alice"], content=many("b").read_bytes())
        assert r.status_code == 413 and "more than 50 files" in r.json()["detail"], r.text
    with session_scope(engine) as s:
        assert [i.files for i in s.scalars(select(Image))] == [30]


def test_another_projects_image_does_not_run_by_its_digest(  # type: ignore[no-untyped-def]
    settings, engine, world, busybox_docker_tar: Path
) -> None:
    """alice's image is approved for p1. bob (p2) names it by its reference, by its bare
    digest, and after importing the same bytes himself: refused each time until an admin
    approves it for p2 (content addressing is not authorisation)."""
    from datetime import timedelta

    from tests.worlds import job_body
    from tre import registry
    from tre.store.base import utcnow

    require_tools()
    with session_scope(engine) as s:
        registry.grant_access(s, "root", "p2", "ct1", expires_at=utcnow() + timedelta(days=1))
    with TestClient(create_app(settings, engine)) as client:
        ref = _import(client, world.headers["alice"], busybox_docker_tar, "alice/seg")["reference"]
        approve = {"reference": ref, "project_id": "p1"}
        assert (
            client.post("/api/v1/images/approvals", headers=world.headers["root"], json=approve).status_code
            == 201
        )
        ok = client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body(image=ref))
        assert ok.status_code == 201, ok.text

        def bob_submits(image: str) -> str:
            r = client.post(
                "/api/v1/jobs", headers=world.headers["bob"], json=job_body(project_id="p2", image=image)
            )
            assert r.status_code in (403, 422), r.text
            return str(r.json()["detail"])

        assert "not approved for project 'p2'" in bob_submits(ref)
        bob_submits(ref.rpartition("@")[2])  # the bare digest: not even a reference the policy allows
        _import(client, world.headers["bob"], busybox_docker_tar, "bob/seg")
        assert "not approved for project 'p2'" in bob_submits(ref)
