"""An image removal killed half-way is settled at the next start, or by
`tre admin image-store-recover`.

A removal moves the image's folders aside, deletes its row, commits, then frees the folders.
A real process runs those steps (the API's own `_remove` in a unit of work) and is killed by
SIGKILL before the commit or after it. Before: killed before the commit, the row stayed with
no image behind it (`has` false: every job of it failed) and the next import's sweep later
deleted its bytes; killed after it, the bytes stayed in tmp/ until that sweep; and every
digest's lock file stayed for ever. Now the next API start puts the image back, or frees it,
as the database decided, and leaves no lock file of an image that is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.images.test_remove import _import
from tests.images.test_remove import tre as tre  # noqa: F401 - the fixture
from tre.api.app import create_app
from tre.config import Settings
from tre.images.store import ImageStore
from tre.store.db import session_scope
from tre.store.models import Image

KILLED_REMOVAL = textwrap.dedent(
    """
    import os, signal, sys
    from tre.api.routers.images import _remove
    from tre.auth.principal import Principal
    from tre.config import get_settings
    from tre.images.store import ImageStore
    from tre.store.db import make_engine, session_scope

    digest, when = sys.argv[1], sys.argv[2]
    settings = get_settings()
    store, detached = ImageStore(settings), []
    with session_scope(make_engine(settings.resolved_database_url)) as s:
        _remove(s, store, Principal("root", frozenset({"admin"})), digest, detached)
        assert detached and not store.has(digest)
        if when == "before-commit":
            os.kill(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)  # committed; the folders not yet freed
    """
)


def _env(settings: Settings, engine: Engine) -> dict[str, str]:
    url = engine.url.render_as_string(hide_password=False)
    return {**os.environ, "TRE_HOME": str(settings.home), "TRE_DATABASE_URL": url}


def _killed_removal(settings: Settings, engine: Engine, digest: str, when: str) -> None:
    env = {
        **os.environ,
        "TRE_HOME": str(settings.home),
        "TRE_DATABASE_URL": engine.url.render_as_string(False),
    }
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_REMOVAL, digest, when],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
def test_a_removal_killed_half_way_is_settled_at_the_next_start(  # type: ignore[no-untyped-def]
    tre, settings: Settings, when: str
) -> None:
    client, h, engine = tre["client"], tre["h"], tre["engine"]
    digest = _import(client, h["root"], tre["a"])["digest"]
    store = ImageStore(settings)
    before = _files(store.root / "oci")
    rootfs = store.rootfs(digest)
    assert (rootfs / "a.txt").read_bytes() == b"A"

    _killed_removal(settings, engine, digest, when)
    left = list((store.root / "tmp").glob("removed-*"))
    assert len(left) == 1 and not store.has(digest)  # the crash window, as it was left
    assert store.sweep_stale(now=10**12) == []  # an old sweep never frees an undecided removal

    with TestClient(create_app(settings, engine)):  # the next start
        pass
    assert list((store.root / "tmp").iterdir()) == []
    with session_scope(engine, read_only=True) as s:
        listed = s.get(Image, digest) is not None
    hex_digest = digest.removeprefix("sha256:")
    if when == "before-commit":  # never removed: the image is whole again, and runs
        assert listed and store.has(digest) and _files(store.root / "oci") == before
        assert (store.rootfs(digest) / "a.txt").read_bytes() == b"A"
        assert client.get("/api/v1/images", headers=h["root"]).json()[0]["digest"] == digest
    else:  # removed: nothing of it is left, its lock files neither
        assert not listed and not store.has(digest)
        assert _files(store.root / "oci") == [] and not (store.root / "bundles" / hex_digest).exists()
        assert not (store.root / "locks" / hex_digest).exists()
        assert not (store.root / "bundles" / f".{hex_digest}.lock").exists()


def test_the_cleanup_command_settles_it_too_and_a_live_removal_is_left_alone(  # type: ignore[no-untyped-def]
    tre, settings: Settings
) -> None:
    client, h, engine = tre["client"], tre["h"], tre["engine"]
    digest = _import(client, h["root"], tre["a"])["digest"]
    store = ImageStore(settings)
    live = store.detach(digest)  # a removal this process is still deciding
    in_db = lambda d: True  # noqa: E731 - the row is there
    assert store.recover_removals(in_db) == []  # its claim is held: not touched
    assert live.trash.exists() and not store.has(digest)
    store.restore(live)
    assert store.has(digest)

    _killed_removal(settings, engine, digest, "after-commit")
    env = {
        **os.environ,
        "TRE_HOME": str(settings.home),
        "TRE_DATABASE_URL": engine.url.render_as_string(False),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tre.cli.main", "admin", "image-store-recover"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "image store: 1 interrupted removal settled"
    assert list((store.root / "tmp").iterdir()) == [] and list((store.root / "locks").iterdir()) == []


def test_a_completed_removal_leaves_no_lock_file(tre, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    client, h = tre["client"], tre["h"]
    digest = _import(client, h["root"], tre["a"])["digest"]
    store = ImageStore(settings)
    store.rootfs(digest)
    assert client.delete(f"/api/v1/images/{digest}", headers=h["root"]).status_code == 200
    assert list((store.root / "locks").iterdir()) == []
    assert [p.name for p in (store.root / "bundles").iterdir()] == []
    assert list((store.root / "tmp").iterdir()) == []
