"""The database goes away (a PostgreSQL server of this test's own, stopped with ``pg_ctl -m
immediate``, as a crash or a failover does) before and during requests: every answer is a
503 problem worth a retry that names no address or driver, nothing is half-written, and once
the server is back the same requests succeed without restarting the API."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from tests.api.test_disk_full import _code_archive, _files_under
from tests.worlds import job_body
from tre.code.store import CodeStore
from tre.images.store import ImageStore
from tre.store.db import init_db, make_engine, session_scope
from tre.store.models import CodeUpload, Image, Job


class StoppablePg:
    """A PostgreSQL server that can be stopped and started again on the same data."""

    def __init__(self) -> None:
        from tests.pg_server import PgServer, find_pg_bin

        if find_pg_bin() is None:
            pytest.skip("PostgreSQL server binaries not installed (run scripts/install-system-deps)")
        self.server = PgServer()
        self.server.start()

    def _ctl(self, *args: str) -> None:
        s = self.server
        subprocess.run(
            [*s._as_user, str(s.bindir / "pg_ctl"), "-D", str(s.data), "-w", *args],
            check=True,
            capture_output=True,
        )

    def crash(self) -> None:
        self._ctl("-m", "immediate", "stop")

    def restart(self) -> None:
        s = self.server
        self._ctl("-l", str(s.root / "log"), "-o", f"-p {s.port} -k {s.root} -h 127.0.0.1 -F", "start")


@pytest.fixture
def pg() -> Iterator[StoppablePg]:
    server = StoppablePg()
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):  # a test that failed while it was down
        server.server.stop()


@pytest.fixture
def engine(pg: StoppablePg) -> Iterator[Engine]:  # the app and the world on this server
    eng = make_engine(pg.server.create_database())
    init_db(eng)
    yield eng
    eng.dispose()


def _unavailable(resp, port: int) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["type"].endswith(":database-unavailable"), resp.text
    assert resp.headers.get("retry-after")
    assert str(port) not in resp.text and "psycopg" not in resp.text and "127.0.0.1" not in resp.text


def test_requests_while_the_database_is_down_and_after_it_is_back(
    app_client, world, engine, pg: StoppablePg
) -> None:  # type: ignore[no-untyped-def]
    alice = world.headers["alice"]
    assert app_client.get("/api/v1/jobs", headers=alice).status_code == 200
    pg.crash()
    _unavailable(app_client.post("/api/v1/jobs", headers=alice, json=job_body()), pg.server.port)
    _unavailable(app_client.get("/api/v1/projects/p1", headers=alice), pg.server.port)
    fresh = world.headers["dana"]  # a token never seen: its user cannot be looked up
    _unavailable(app_client.get("/api/v1/egress/requests", headers=fresh), pg.server.port)
    pg.restart()
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0  # the refused submission
    again = app_client.post("/api/v1/jobs", headers=alice, json=job_body())
    assert again.status_code == 201, again.text
    assert app_client.get("/api/v1/egress/requests", headers=fresh).status_code == 200


def test_the_database_goes_away_while_an_upload_streams_in(
    app_client, world, engine, settings, pg: StoppablePg
) -> None:  # type: ignore[no-untyped-def]
    """The body is half sent when the server dies: the upload is answered 503 when it is
    to be recorded, no row exists, and the same upload succeeds once the server is back."""
    body = _code_archive(2 << 20)

    def chunks() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        pg.crash()
        time.sleep(0.1)
        yield body[len(body) // 2 :]

    headers = {**world.headers["alice"], "Content-Type": "application/gzip"}
    url = "/api/v1/code?project_id=p1"
    _unavailable(app_client.post(url, content=chunks(), headers=headers), pg.server.port)
    assert _files_under(CodeStore(settings).root) == []  # no archive without its row
    pg.restart()
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(CodeUpload)) == 0
    again = app_client.post(url, content=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["already_stored"] is False  # this project had not uploaded it before


def test_the_database_goes_away_while_an_image_is_imported(
    app_client, world, engine, settings, pg: StoppablePg, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The same for an image: the layout and root filesystem it unpacked are not kept
    without their row, and the import succeeds once the server is back."""
    imagekit = pytest.importorskip("tests.images.imagekit")
    if not imagekit.have_tools():
        pytest.skip("skopeo, umoci or busybox-static not installed")
    body = imagekit.oci_archive(
        imagekit.build_busybox_layout(tmp_path / "bb"), tmp_path / "bb.tar"
    ).read_bytes()

    def chunks() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        pg.crash()
        yield body[len(body) // 2 :]

    headers = {**world.headers["root"], "Content-Type": "application/x-tar"}
    _unavailable(app_client.post("/api/v1/images", content=chunks(), headers=headers), pg.server.port)
    # Only the per-image unpack lock and the per-digest import/removal lock stay (every import
    # leaves them; they hold nothing).
    store = ImageStore(settings).root
    left = [f for f in _files_under(store) if not f.endswith(".lock")]
    assert [f for f in left if not (f.startswith("locks/") and (store / f).stat().st_size == 0)] == []
    pg.restart()
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 0
    again = app_client.post("/api/v1/images", content=body, headers=headers)
    assert again.status_code == 201, again.text


def test_connections_idle_across_a_failed_connect_are_pinged_after_a_quick_restart(
    engine: Engine, pg: StoppablePg
) -> None:
    """Pooled connections are pinged only after 2 s idle (`tre.store.db._ping_after_idle`),
    but one checked in before a connection attempt failed is pinged whatever its idle: a
    server back within 2 s otherwise handed the next unit of work a dead connection (CI:
    "server terminated abnormally" right after the upload test's restart)."""
    held = [engine.connect() for _ in range(2)]
    for conn in held:
        conn.execute(select(1))
    for conn in held:
        conn.close()  # two live connections back in the pool, idle for moments only
    pg.crash()
    stale = [engine.connect() for _ in range(2)]  # the pool's two: not pinged, not used
    with pytest.raises(OperationalError):
        engine.connect()  # a third needs a new connection: refused, the server is down
    for conn in stale:
        conn.close()
    pg.restart()
    with session_scope(engine) as s:
        assert s.scalar(select(1)) == 1
