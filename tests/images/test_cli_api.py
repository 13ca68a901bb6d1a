"""The image workflow as users run it: the CLI (a subprocess) against a live API. Alice
imports a docker save archive, an admin approves it for her project, admission refuses an
unapproved image naming the usable ones, and the worker hands the sandbox the image's root
filesystem and config. Roles are enforced on every image route."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.images.conftest import require_tools
from tests.images.imagekit import MARKER, docker_archive
from tre.api.app import create_app
from tre.images.store import ImageStore
from tre.jobs.worker import Worker
from tre.server import BackgroundServer
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Image, Job


def _tre(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def live(settings, engine, world, token_for) -> Iterator[dict[str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    require_tools()
    with BackgroundServer(create_app(settings, engine)) as server:
        base = {**os.environ, "TRE_HOME": str(settings.home), "TRE_API_URL": server.url, "COLUMNS": "250"}
        yield {
            who: {**base, "TRE_TOKEN": token_for(who, *roles)}
            for who, roles in {
                "alice": ["researcher"],
                "bob": ["researcher"],
                "root": ["admin"],
                "audrey": ["auditor"],
            }.items()
        }


def test_import_approve_list_and_admit(live, settings, engine, busybox_docker_tar: Path) -> None:
    alice, root, bob = live["alice"], live["root"], live["bob"]
    proc = _tre(alice, "image", "import", str(busybox_docker_tar))
    assert proc.returncode == 0, proc.stderr
    ref = proc.stdout.split("imported ")[1].split()[0]
    assert ref.startswith("registry.tre.local/tre-test/marker@sha256:")
    digest = ref.split("@")[1]
    with session_scope(engine) as s:
        image = s.get(Image, digest)
        assert image is not None and image.imported_by == "alice" and image.layers == 1

    listed = json.loads(_tre(alice, "image", "list", "--json").stdout)
    assert [(r["reference"], r["imported_by"], r["approved_for"]) for r in listed if r["imported"]] == [
        (ref, "alice", [])
    ]
    (row,) = [line for line in _tre(alice, "image", "list").stdout.splitlines() if "tre-test/marker" in line]
    # The image's time says UTC, as every other listing's (newcomer round 22: a bare
    # 2026-12-02T10:30:27 read as local time).
    assert row.split("\t")[4].endswith(" UTC"), row
    # Bob (another project) does not see an image that is neither his nor approved for him.
    assert [r for r in json.loads(_tre(bob, "image", "list", "--json").stdout) if r["imported"]] == []

    # Not approved yet: admission refuses and names what p1 may run.
    submit = ["submit", "-p", "p1", "-d", "ct1", "--image", ref, "--", "cat", "/marker.txt"]
    line = _one_line_error(_tre(alice, *submit), "not approved for project 'p1'", "usable images:")
    assert "registry.tre.local/tre-job-cpu@sha256:" in line

    # Only admins approve.
    _one_line_error(_tre(alice, "image", "approve", ref, "--project", "p1"), "Forbidden")
    proc = _tre(root, "image", "approve", ref, "--project", "p1")
    assert proc.returncode == 0 and "approved" in proc.stdout, proc.stderr
    usable = _tre(alice, "image", "list", "--usable", "-p", "p1").stdout.split()
    assert ref in usable
    assert _tre(bob, "image", "list", "--usable", "-p", "p1").stdout.startswith("no image")

    proc = _tre(alice, *submit)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split("submitted job ")[1].split()[0]
    # The worker gives the sandbox the image's own root filesystem and config.
    worker = Worker(settings, engine)
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        spec = worker._spec(job, [])
    assert spec.rootfs is not None and (spec.rootfs / "marker.txt").read_text().strip() == MARKER
    assert spec.image_config is not None and spec.image_config.env == {"TRE_IMAGE_ENV": "from-image"}

    # Revoked: refused again; both decisions are in the audit log.
    assert _tre(root, "image", "revoke", ref, "--project", "p1").returncode == 0
    _one_line_error(_tre(alice, *submit), "not approved")
    with session_scope(engine) as s:
        actions = [
            a
            for (a,) in s.query(AuditEntry.action)
            .filter(AuditEntry.action.like("image.%"))
            .order_by(AuditEntry.idx)
        ]
    # (the first two approvals are the world fixture's, of the platform job image for p1 and p2)
    assert actions == [
        "image.approved",
        "image.approved",
        "image.imported",
        "image.approved",
        "image.revoked",
    ]


def test_hostile_upload_is_one_line_and_stores_nothing(live, engine, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"MZ" + os.urandom(2000))
    _one_line_error(_tre(live["alice"], "image", "import", str(junk)), "Image rejected", "not a readable tar")
    with session_scope(engine) as s:
        assert s.query(Image).count() == 0


@pytest.mark.parametrize("given", ["sha256:zz", "busybox:latest", "sha256:" + "0f" * 8])
def test_approving_what_names_no_image_says_what_to_give(live, given: str) -> None:
    """Not a reference, or a digest prefix of no image: one line saying what to type (the
    server's answer was its request schema's pattern)."""
    line = _one_line_error(_tre(live["root"], "image", "approve", given, "-p", "p1"), "names no image")
    assert "NAME@sha256:HEX" in line and "tre image list" in line and "pattern" not in line


def test_approving_an_unknown_image_needs_external(live) -> None:
    ref = "registry.tre.local/never-imported@sha256:" + "cd" * 32
    _one_line_error(_tre(live["root"], "image", "approve", ref, "-p", "p1"), "import it first")
    assert _tre(live["root"], "image", "approve", ref, "-p", "p1", "--external").returncode == 0


def test_upload_size_is_bounded(settings, engine, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small = settings.model_copy(update={"image_max_upload_mb": 1})
    with TestClient(create_app(small, engine)) as client:
        r = client.post("/api/v1/images", headers=world.headers["alice"], content=b"\0" * ((1 << 20) + 1))
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("user", "path", "body"),
    [
        ("alice", "/api/v1/images/approvals", {"reference": "x@sha256:" + "a" * 64, "project_id": "p1"}),
        (
            "alice",
            "/api/v1/images/approvals/revoke",
            {"reference": "x@sha256:" + "a" * 64, "project_id": "p1"},
        ),
        ("alice", "/api/v1/images/push", {"reference": "x@sha256:" + "a" * 64}),
        ("dana", "/api/v1/images", None),
        ("audrey", "/api/v1/images", None),
    ],
)
def test_image_roles(app_client, world, user, path, body) -> None:  # type: ignore[no-untyped-def]
    kw = {"json": body} if body is not None else {"content": b"not read"}
    r = app_client.post(path, headers=world.headers[user], **kw)
    assert r.status_code == 403, r.text


def test_oci_layout_folder_is_uploaded_by_the_cli(live, busybox_layout: Path) -> None:
    want = json.loads((busybox_layout / "index.json").read_text())["manifests"][0]["digest"]
    proc = _tre(live["alice"], "image", "import", str(busybox_layout), "--name", "alice/busybox", "--json")
    assert proc.returncode == 0, proc.stderr
    image = json.loads(proc.stdout)
    assert image["digest"] == want and image["reference"] == f"registry.tre.local/alice/busybox@{want}"
    assert image["source_format"] == "oci-archive"


def test_only_admins_import_under_the_platform_job_images_names(
    app_client, world, settings, engine, busybox_layout: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Red team round 19: a researcher's image imported as `registry.tre.local/tre-job-cpu@...`
    (by --name or by the archive's own tag) read as the platform's to an approving admin, and
    `tre preprocess` took any approved reference ending in `/tre-job-cpu@` as the job image."""
    require_tools()
    alice, store = world.headers["alice"], ImageStore(settings).root / "oci"
    for name in ("tre-job-cpu", "Someone/TRE-JOB-cuda:1"):  # before a byte is read
        r = app_client.post(
            "/api/v1/images", params={"name": name}, headers=world.headers["alice"], content=b"x"
        )
        assert r.status_code == 422 and r.json()["type"].endswith("image-name-reserved"), r.text
        assert "--name NAME" in r.json()["detail"]
    tagged = docker_archive(busybox_layout, tmp_path / "tagged.tar", name="alice/tre-job-cpu:latest")
    r = app_client.post("/api/v1/images", headers=alice, content=tagged.read_bytes())
    assert r.status_code == 422 and "'alice/tre-job-cpu'" in r.json()["detail"], r.text
    with session_scope(engine) as s:
        assert s.query(Image).count() == 0
    assert not store.is_dir() or not list(store.iterdir())  # the fresh image left the store
    # The same archive under a name of its own, and an admin under the platform's name.
    r = app_client.post(
        "/api/v1/images",
        params={"name": "alice/analysis"},
        headers=world.headers["alice"],
        content=tagged.read_bytes(),
    )
    assert r.status_code == 201 and r.json()["name"] == "alice/analysis", r.text
    r = app_client.post("/api/v1/images", headers=world.headers["root"], content=tagged.read_bytes())
    assert r.status_code == 201, r.text


def test_preprocess_takes_the_newest_job_image_by_its_name() -> None:
    from tre.cli.preprocess import default_job_image

    def view(ref: str, at: str) -> dict[str, str]:
        return {
            "reference": ref,
            "name": ref.rpartition("@")[0].removeprefix("registry.tre.local/"),
            "imported_at": at,
        }

    old, new = (
        "registry.tre.local/tre-job-cpu@sha256:" + "f" * 64,
        "registry.tre.local/tre-job-cpu@sha256:" + "0" * 64,
    )
    external = "ghcr.io/tre-project/tre-job-cpu@sha256:" + "1" * 64
    listed = [view(old, "2026-01-01T00:00:00"), view(new, "2026-02-01T00:00:00")]
    listed.append({"reference": external, "name": external.rpartition("@")[0], "imported_at": ""})
    listed.append(view("registry.tre.local/tre-job-cpu-extra@sha256:" + "e" * 64, "2026-03-01T00:00:00"))

    class Listing:
        def get(self, path: str, params: dict[str, str]) -> list[dict[str, str]]:
            return listed

    assert default_job_image(Listing(), "p1") == new  # type: ignore[arg-type]
    listed[:2] = []
    assert default_job_image(Listing(), "p1") == external  # type: ignore[arg-type]


def test_an_archive_naming_no_repository_is_said_to_be_called_image(
    live, busybox_layout: Path, tmp_path: Path
) -> None:
    """Newcomer round 22: an OCI layout without a name became `registry.tre.local/image@...`
    and nothing said that 'image' was a default, nor how to name it."""
    unnamed = tmp_path / "unnamed"
    shutil.copytree(busybox_layout, unnamed)
    index = json.loads((unnamed / "index.json").read_text())
    for entry in index["manifests"]:
        entry.pop("annotations", None)  # no org.opencontainers.image.ref.name
    (unnamed / "index.json").write_text(json.dumps(index))
    proc = _tre(live["alice"], "image", "import", str(unnamed))
    assert proc.returncode == 0, proc.stderr
    assert "registry.tre.local/image@sha256:" in proc.stdout
    assert "the archive names no repository, so the image is called 'image'; --name NAME" in proc.stdout
    named = _tre(live["bob"], "image", "import", str(unnamed), "--name", "bob/x")
    assert named.returncode == 0 and "names no repository" not in named.stdout, named.stderr
