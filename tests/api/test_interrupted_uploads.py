"""A client that goes away half-way through an upload (a real socket to a real uvicorn,
closed after part of the declared body): the server keeps nothing of it (no scratch file,
no row), and the same upload sent whole afterwards succeeds."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from tests.api.test_disk_full import _code_archive, _files_under
from tre.api.app import create_app
from tre.code.store import CodeStore
from tre.images.store import ImageStore
from tre.server import BackgroundServer
from tre.store.db import session_scope
from tre.store.models import CodeArchive, CodeUpload, Image


def _send_half_and_hang_up(url: str, path: str, token: str, body: bytes, ctype: str) -> None:
    parts = urlsplit(url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.5)  # the server is now streaming the body to disk
        sock.shutdown(socket.SHUT_RDWR)


def _settled(check, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.mark.parametrize(
    ("path", "ctype", "store_of", "user"),
    [
        ("/api/v1/code?project_id=p1", "application/gzip", lambda s: CodeStore(s).root, "alice"),
        ("/api/v1/images", "application/x-tar", lambda s: ImageStore(s).root, "root"),
    ],
    ids=["code", "image"],
)
def test_an_upload_cut_off_half_way_keeps_nothing(  # type: ignore[no-untyped-def]
    settings, engine, world, token_for, path: str, ctype: str, store_of, user: str, tmp_path: Path
) -> None:
    role = "admin" if user == "root" else "researcher"
    body = _code_archive(4 << 20)
    if ctype == "application/x-tar":
        busybox = pytest.importorskip("tests.images.imagekit")
        if not busybox.have_tools():
            pytest.skip("skopeo, umoci or busybox-static not installed")
        layout = busybox.build_busybox_layout(tmp_path / "bb")
        body = busybox.oci_archive(layout, tmp_path / "bb.tar").read_bytes()
    token = token_for(user, role)
    root = store_of(settings)
    with BackgroundServer(create_app(settings, engine)) as server:
        _send_half_and_hang_up(server.url, path, token, body, ctype)
        assert _settled(lambda: _files_under(root) == []), _files_under(root)
        with session_scope(engine) as s:
            rows = [s.scalar(select(func.count()).select_from(t)) for t in (CodeUpload, CodeArchive, Image)]
        assert rows == [0, 0, 0]
        whole = httpx.post(
            server.url + path,
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": ctype},
            timeout=60,
        )
        assert whole.status_code == 201, whole.text
