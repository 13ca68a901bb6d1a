"""What a manifest's layer list may name, checked before skopeo parses the archive (and
again on the layout skopeo wrote): researchers' images that cannot work are refused with
the reason and what to do, and nothing is fetched from the network for them (review
round 12). Before, a foreign layer was reported as a missing blob, a sha512 manifest as
not being in the archive, and 5,000 layers were copied by skopeo before being refused."""

from __future__ import annotations

import http.server
import tarfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.images.conftest import store_is_empty
from tests.images.imagekit import add_file, crafted_docker_archive, crafted_oci_archive, layer_tar, sha
from tre.config import Settings
from tre.images.errors import ImageRejected
from tre.images.layout import host_architecture, verify_layout
from tre.images.limits import ImageLimits
from tre.images.store import ImageStore

LAYER = layer_tar(lambda t: add_file(t, "a.txt", b"a"))
BLOB = zlib.compress(LAYER, 9, wbits=31)


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB)))
        self.end_headers()
        self.wfile.write(BLOB)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback that records every request (a foreign layer's URL)."""
    _Counter.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/layer", _Counter.hits
    finally:
        server.shutdown()
        server.server_close()


def _refused(store: ImageStore, archive: Path, *words: str) -> str:
    with pytest.raises(ImageRejected) as info:
        store.import_path(archive)
    reason = str(info.value)
    assert "\n" not in reason and str(store.root) not in reason
    for w in words:
        assert w in reason, reason
    assert store_is_empty(store)
    return reason


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ],
)
def test_a_foreign_layer_is_refused_and_its_url_never_fetched(
    store: ImageStore, tmp_path: Path, web: tuple[str, list[str]], media_type: str
) -> None:
    url, hits = web

    def foreign(manifest: dict[str, Any]) -> None:
        manifest["layers"][0]["urls"] = [url]

    archive = crafted_oci_archive(tmp_path / "f.tar", [BLOB], [sha(LAYER)], media_type, edit_manifest=foreign)
    _refused(store, archive, "layer 1 is a foreign or non-distributable layer", "fetches nothing")
    assert hits == []


def test_a_foreign_layer_in_a_layout_is_refused_too(tmp_path: Path, settings: Settings) -> None:
    """The check on the layout skopeo wrote (what an index's chosen platform reaches)."""
    archive = crafted_oci_archive(
        tmp_path / "f.tar",
        [BLOB],
        [sha(LAYER)],
        edit_manifest=lambda m: m["layers"][0].update(urls=["http://127.0.0.1:9/x"]),
    )
    layout = tmp_path / "layout"
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    with pytest.raises(ImageRejected, match="foreign or non-distributable"):
        verify_layout(layout, ImageLimits.from_settings(settings))


def test_a_sha512_layer_digest_is_named_as_such(store: ImageStore, tmp_path: Path) -> None:
    def sha512(manifest: dict[str, Any]) -> None:
        manifest["layers"][0]["digest"] = "sha512:" + "ab" * 64

    archive = crafted_oci_archive(tmp_path / "s.tar", [BLOB], [sha(LAYER)], edit_manifest=sha512)
    _refused(store, archive, "layer 1 by a sha512 digest", "only sha256")


def test_a_sha512_manifest_digest_is_named_as_such(store: ImageStore, tmp_path: Path) -> None:
    archive = tmp_path / "m.tar"
    with tarfile.open(archive, "w") as tar:
        add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        index = (
            b'{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            b'"digest":"sha512:' + b"cd" * 64 + b'","size":10}]}'
        )
        add_file(tar, "index.json", index)
    _refused(store, archive, "manifest by a sha512 digest", "only sha256")


def test_a_zstd_layer_says_how_to_re_export(store: ImageStore, tmp_path: Path) -> None:
    archive = crafted_oci_archive(
        tmp_path / "z.tar", [BLOB], [sha(LAYER)], "application/vnd.oci.image.layer.v1.tar+zstd"
    )
    _refused(store, archive, "unsupported media type", "--dest-compress-format=gzip")


def test_thousands_of_layers_are_refused_before_skopeo_copies_them(
    store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 descriptors of one tiny layer: refused from the manifest, skopeo never started
    (copying them took minutes)."""
    import tre.images.store as store_module

    copies: list[str] = []
    real = store_module.skopeo_to_layout
    monkeypatch.setattr(
        store_module, "skopeo_to_layout", lambda src, dst: (copies.append(src), real(src, dst))
    )
    archive = crafted_oci_archive(tmp_path / "many.tar", [BLOB] * 5000, [sha(LAYER)] * 5000)
    _refused(store, archive, "5000 layers", "more than the 128 allowed")
    assert copies == []


def test_duplicate_layers_and_an_opaque_whiteout_in_the_first_layer_import(
    store: ImageStore, tmp_path: Path
) -> None:
    """What real builds produce: the same layer twice (a RUN that changed nothing twice),
    and an opaque whiteout in a base layer (it hides nothing there)."""

    def first(tar: tarfile.TarFile) -> None:
        add_file(tar, "etc/.wh..wh..opq", b"")
        add_file(tar, "etc/hostname", b"box\n")

    base = layer_tar(first)
    blobs = [zlib.compress(base, 9, wbits=31), BLOB, BLOB]
    archive = crafted_oci_archive(tmp_path / "dup.tar", blobs, [sha(base), sha(LAYER), sha(LAYER)])
    result = store.import_path(archive)
    root = store.rootfs(result.digest)
    assert (root / "etc" / "hostname").read_text() == "box\n" and (root / "a.txt").read_text() == "a"
    assert not (root / "etc" / ".wh..wh..opq").exists()


OTHER_ARCH = "s390x" if host_architecture() != "s390x" else "arm64"


@pytest.mark.parametrize("fmt", ["oci", "docker"])
@pytest.mark.parametrize("platform", [("linux", OTHER_ARCH), ("windows", host_architecture())])
def test_an_image_for_another_platform_is_refused_at_import(
    store: ImageStore, tmp_path: Path, fmt: str, platform: tuple[str, str]
) -> None:
    """An Apple-silicon laptop builds linux/arm64 by default: before, such an image imported,
    though this host cannot execute its programs."""
    if fmt == "oci":
        archive = crafted_oci_archive(tmp_path / "p.tar", [BLOB], [sha(LAYER)], platform=platform)
    else:
        archive = crafted_docker_archive(tmp_path / "p.tar", [LAYER], platform=platform)
    host = host_architecture()
    _refused(
        store,
        archive,
        f"the image is built for {platform[0]}/{platform[1]}, and jobs here run on linux/{host}",
        f"docker build --platform linux/{host}",
    )
