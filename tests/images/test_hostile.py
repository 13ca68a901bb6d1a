"""Hostile images are refused with a one-sentence reason and leave nothing in the store;
privilege bits and file capabilities never reach the unpacked root filesystem."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.images.conftest import store_is_empty
from tests.images.imagekit import add_file, add_special, crafted_docker_archive, layer_tar, sha
from tre.config import Settings
from tre.images.errors import ImageRejected
from tre.images.store import ImageStore


def _refused(store: ImageStore, archive: Path, *words: str) -> str:
    with pytest.raises(ImageRejected) as info:
        store.import_path(archive)
    reason = str(info.value)
    assert "\n" not in reason
    for w in words:
        assert w in reason, reason
    assert store_is_empty(store)
    return reason


def _image(tmp_path: Path, *layers: bytes, diff_ids: list[str] | None = None) -> Path:
    return crafted_docker_archive(tmp_path / "crafted.tar", list(layers), diff_ids)


def test_a_well_formed_crafted_archive_is_accepted(store: ImageStore, tmp_path: Path) -> None:
    """The control case: the same hand-written archive format, with nothing hostile, imports."""
    layer = layer_tar(lambda t: add_file(t, "hello.txt", b"hi"))
    result = store.import_path(_image(tmp_path, layer))
    assert (store.rootfs(result.digest) / "hello.txt").read_bytes() == b"hi"


def test_non_image_files(store: ImageStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(4096))
    _refused(store, junk, "not a readable tar")
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        add_file(tar, "notes.txt", b"not an image")
    _refused(store, plain, "not an image archive")


def test_config_diff_id_mismatch(store: ImageStore, tmp_path: Path) -> None:
    layer = layer_tar(lambda t: add_file(t, "a.txt"))
    _refused(store, _image(tmp_path, layer, diff_ids=[sha(b"something else")]), "digest mismatch")


def test_oci_blob_that_does_not_hash_to_its_name(
    store: ImageStore, busybox_oci_tar: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(busybox_oci_tar) as src, tarfile.open(tampered, "w") as dst:
        for member in src:
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if data is not None and member.name.startswith("blobs/") and member.size > 100_000:
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    _refused(store, tampered, "digest mismatch")


def test_dotdot_path_in_a_layer(store: ImageStore, tmp_path: Path) -> None:
    layer = layer_tar(lambda t: add_file(t, "usr/../../etc/cron.d/evil", b"* * * * * root sh"))
    _refused(store, _image(tmp_path, layer), "escapes the image root")


def test_absolute_symlink_written_through(store: ImageStore, tmp_path: Path) -> None:
    def add(t: tarfile.TarFile) -> None:
        add_special(t, "etcdir", tarfile.SYMTYPE, "/etc")
        add_file(t, "etcdir/cron.d/evil", b"x")

    _refused(store, _image(tmp_path, layer_tar(add)), "written through the symbolic link")


def test_symlink_written_through_from_an_earlier_layer(store: ImageStore, tmp_path: Path) -> None:
    first = layer_tar(lambda t: add_special(t, "lib64", tarfile.SYMTYPE, "/"))
    second = layer_tar(lambda t: add_file(t, "lib64/root/.ssh/authorized_keys", b"ssh-ed25519 AAAA"))
    _refused(store, _image(tmp_path, first, second), "written through the symbolic link")


@pytest.mark.parametrize("same_layer", [True, False])
def test_symlink_written_through_a_hard_link_to_it(
    store: ImageStore, tmp_path: Path, same_layer: bool
) -> None:
    """`h` hard-linked to `l -> /etc` is itself a link to /etc: `h/evil` wrote into the
    image's /etc unrefused (umoci kept it inside the root; the layer check must not rely on that)."""

    def links(t: tarfile.TarFile) -> None:
        add_special(t, "l", tarfile.SYMTYPE, "/etc")
        add_special(t, "h", tarfile.LNKTYPE, "l")

    def through(t: tarfile.TarFile) -> None:
        add_file(t, "h/evil", b"x")

    if same_layer:
        layers = [layer_tar(lambda t: (links(t), through(t)))]
    else:
        layers = [layer_tar(links), layer_tar(through)]
    _refused(store, _image(tmp_path, *layers), "written through the symbolic link 'h'")


def _dir(t: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    t.addfile(info)


def test_a_folder_entry_does_not_forget_the_links_inside_it(store: ImageStore, tmp_path: Path) -> None:
    """Layer 2 re-declares `lib` (as image builders do for every parent): the folder keeps
    layer 1's `lib/x -> /etc`, so `lib/x/evil` is still a write through it (it was accepted
    and landed in the image's /etc)."""
    lower = layer_tar(lambda t: (_dir(t, "lib"), add_special(t, "lib/x", tarfile.SYMTYPE, "/etc")))
    upper = layer_tar(lambda t: (_dir(t, "lib"), add_file(t, "lib/x/evil", b"x")))
    _refused(store, _image(tmp_path, lower, upper), "written through the symbolic link 'lib/x'")


@pytest.mark.parametrize("spelling", ["lib/./x/evil", "lib//x/evil", "./lib/x/./evil"])
def test_a_write_through_a_link_spelled_with_dots_or_slashes(
    store: ImageStore, tmp_path: Path, spelling: str
) -> None:
    def add(t: tarfile.TarFile) -> None:
        _dir(t, "lib")
        add_special(t, "lib/x", tarfile.SYMTYPE, "/etc")
        add_file(t, spelling, b"x")

    _refused(store, _image(tmp_path, layer_tar(add)), "written through the symbolic link 'lib/x'")


def test_a_file_or_whiteout_replacing_a_folder_forgets_its_links(store: ImageStore, tmp_path: Path) -> None:
    """The control: once `lib` is whited out and made a plain folder again, `lib/x/a` is an
    ordinary path (umoci removed the old link with the folder)."""
    lower = layer_tar(lambda t: (_dir(t, "lib"), add_special(t, "lib/x", tarfile.SYMTYPE, "/etc")))
    upper = layer_tar(
        lambda t: (
            add_file(t, ".wh.lib", b""),
            _dir(t, "lib"),
            _dir(t, "lib/x"),
            add_file(t, "lib/x/a", b"a"),
        )
    )
    result = store.import_path(_image(tmp_path, lower, upper))
    assert (store.rootfs(result.digest) / "lib" / "x" / "a").read_bytes() == b"a"


def test_relative_symlink_out_of_the_image(store: ImageStore, tmp_path: Path) -> None:
    layer = layer_tar(lambda t: add_special(t, "a/b/shadow", tarfile.SYMTYPE, "../../../etc/shadow"))
    _refused(store, _image(tmp_path, layer), "points outside the image")


def test_hardlink_out_of_the_image(store: ImageStore, tmp_path: Path) -> None:
    layer = layer_tar(lambda t: add_special(t, "passwd", tarfile.LNKTYPE, "../etc/passwd"))
    _refused(store, _image(tmp_path, layer), "escapes the image root")


@pytest.mark.parametrize(
    ("kind", "word"),
    [(tarfile.CHRTYPE, "device node"), (tarfile.BLKTYPE, "device node"), (tarfile.FIFOTYPE, "special file")],
)
def test_device_nodes_and_fifos(store: ImageStore, tmp_path: Path, kind: bytes, word: str) -> None:
    _refused(store, _image(tmp_path, layer_tar(lambda t: add_special(t, "dev/mem", kind))), word)


def test_setuid_and_capabilities_are_dropped_on_unpack(store: ImageStore, tmp_path: Path) -> None:
    def add(t: tarfile.TarFile) -> None:
        add_file(t, "bin/su", b"#!/bin/sh\n", mode=0o4755)
        add_file(t, "bin/newgrp", b"#!/bin/sh\n", mode=0o2755)
        info = tarfile.TarInfo("bin/ping")
        data = b"\x7fELF"
        info.size, info.mode = len(data), 0o755
        # A file capability (cap_net_raw) as docker save writes it: a PAX xattr record.
        # vfs_cap_data v2 (20 bytes): magic|effective, permitted = CAP_NET_RAW (bit 13), rest 0.
        cap = "\x01\x00\x00\x02" + "\x00\x20\x00\x00" + "\x00" * 12
        info.pax_headers = {"SCHILY.xattr.security.capability": cap}
        t.addfile(info, io.BytesIO(data))

    result = store.import_path(_image(tmp_path, layer_tar(add)))
    assert result.setuid_dropped == 2
    root = store.rootfs(result.digest)
    for name in ("su", "newgrp", "ping"):
        mode = (root / "bin" / name).stat().st_mode
        assert not mode & 0o6000, (name, oct(mode))
        assert os.listxattr(root / "bin" / name) == []
    assert (root / "bin" / "su").stat().st_mode & 0o777 == 0o755


def test_whiteouts_are_applied(store: ImageStore, tmp_path: Path) -> None:
    def first(t: tarfile.TarFile) -> None:
        add_file(t, "keep.txt", b"k")
        add_file(t, "secret.txt", b"s")
        add_file(t, "cache/a", b"a")

    def second(t: tarfile.TarFile) -> None:
        add_file(t, ".wh.secret.txt", b"")
        add_file(t, "cache/.wh..wh..opq", b"")
        add_file(t, "cache/b", b"b")

    root = store.rootfs(store.import_path(_image(tmp_path, layer_tar(first), layer_tar(second))).digest)
    assert (root / "keep.txt").exists() and not (root / "secret.txt").exists()
    assert sorted(p.name for p in (root / "cache").iterdir()) == ["b"]


def _store_with(settings: Settings, **limits: int) -> ImageStore:
    return ImageStore(settings.model_copy(update=limits))


def test_oversized_layer(settings: Settings, tmp_path: Path) -> None:
    store = _store_with(settings, image_max_layer_mb=1)
    layer = layer_tar(lambda t: add_file(t, "big.bin", os.urandom((1 << 20) + 10)))
    _refused(store, _image(tmp_path, layer), "layer 1 is larger than 1 MiB")


def test_oversized_total(settings: Settings, tmp_path: Path) -> None:
    store = _store_with(settings, image_max_unpacked_mb=1)
    one = layer_tar(lambda t: add_file(t, "a.bin", os.urandom(600_000)))
    two = layer_tar(lambda t: add_file(t, "b.bin", os.urandom(600_000)))
    _refused(store, _image(tmp_path, one, two), "unpacks to more than 1 MiB")


def test_too_many_files(settings: Settings, tmp_path: Path) -> None:
    store = _store_with(settings, image_max_files=50)

    def add(t: tarfile.TarFile) -> None:
        for i in range(60):
            add_file(t, f"f/{i}", b"")

    _refused(store, _image(tmp_path, layer_tar(add)), "more than 50 files")


def test_two_images_in_one_archive(store: ImageStore, tmp_path: Path) -> None:
    archive = _image(tmp_path, layer_tar(lambda t: add_file(t, "a")))
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    two = tmp_path / "two.tar"
    with tarfile.open(archive) as src, tarfile.open(two, "w") as dst:
        for m in src:
            if m.name != "manifest.json":
                dst.addfile(m, src.extractfile(m))
        add_file(dst, "manifest.json", json.dumps(manifest * 2).encode())
    _refused(store, two, "exactly one image")


def test_archive_member_escaping_the_archive(store: ImageStore, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_file(tar, "index.json", b'{"schemaVersion":2,"manifests":[]}')
        add_file(tar, "../../escape.txt", b"x")
    _refused(store, evil, "points outside the archive")
    assert not (tmp_path.parent / "escape.txt").exists()


def test_sanitise_tree_strips_privilege_bits_xattrs_and_special_files(tmp_path: Path) -> None:
    """The walk after umoci, on its own: whatever an unpacker leaves, these never survive."""
    from tre.images.errors import ImageRejected as Rejected
    from tre.images.unpack import sanitise_tree

    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    su = root / "bin" / "su"
    su.write_bytes(b"x" * 10)
    su.chmod(0o6755)
    os.setxattr(su, "user.note", b"1")
    os.setxattr(su, "security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00" + b"\x00" * 12)
    os.mkfifo(root / "bin" / "pipe")
    assert sanitise_tree(root, 1 << 20) == 10
    assert su.stat().st_mode & 0o7777 == 0o755
    assert os.listxattr(su) == []
    assert not (root / "bin" / "pipe").exists()
    with pytest.raises(Rejected, match="more than 0 MiB"):
        sanitise_tree(root, 5)


def test_tool_refusals_do_not_show_server_paths(store: ImageStore, tmp_path: Path) -> None:
    """An OCI archive whose manifest names a config it lacks: skopeo refuses; the reason hides
    our paths. (A manifest the archive lacks is refused by our own check, before skopeo.)"""
    missing = tmp_path / "missing.tar"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(b"nope"),
                "size": 4,
            },
            # One present layer: an empty list is now refused by our own check first.
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(b"x"), "size": 1}
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(manifest),
                "size": len(manifest),
            }
        ],
    }
    with tarfile.open(missing, "w") as tar:
        add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_file(tar, "index.json", json.dumps(index).encode())
        add_file(tar, "blobs/sha256/" + sha(manifest).removeprefix("sha256:"), manifest)
        add_file(tar, "blobs/sha256/" + sha(b"x").removeprefix("sha256:"), b"x")
    reason = _refused(store, missing, "not a usable image")
    assert str(store.root) not in reason and "/tmp" not in reason


@pytest.mark.parametrize(
    "volumes",
    [
        {f"/v{i}": {} for i in range(33)},
        {"../escape": {}},
        {"relative/path": {}},
        {"/": {}},
        {"/a/../../etc": {}},
        {"/bad\nname": {}},
        {"/" + "x" * 1100: {}},
    ],
    ids=["too-many", "dotdot", "relative", "root", "inner-dotdot", "newline", "long"],
)
def test_declared_volumes_that_cannot_be_masked_are_refused(
    store: ImageStore, tmp_path: Path, volumes: dict[str, object]
) -> None:
    """Redteam round 11: Docker and Kubernetes cover each declared volume with an empty
    read-only mount, so each must be a plain absolute path, and few of them."""
    import zlib

    from tests.images.imagekit import crafted_oci_archive

    layer = layer_tar(lambda t: add_file(t, "hello.txt", b"hi"))
    blob = zlib.compress(layer, 6, wbits=31)
    archive = crafted_oci_archive(
        tmp_path / "vol.tar", [blob], [sha(layer)], config_extra={"Volumes": volumes}
    )
    assert "volume" in _refused(store, archive).lower()


def test_declared_volumes_are_kept_for_the_backends(store: ImageStore, tmp_path: Path) -> None:
    import zlib

    from tests.images.imagekit import crafted_oci_archive
    from tre.images.layout import config_from_json, config_to_json

    layer = layer_tar(lambda t: add_file(t, "hello.txt", b"hi"))
    blob = zlib.compress(layer, 6, wbits=31)
    extra = {"Volumes": {"/var/lib/app": {}, "/cache/": {}}}
    archive = crafted_oci_archive(tmp_path / "vol.tar", [blob], [sha(layer)], config_extra=extra)
    result = store.import_path(archive)
    assert result.config.volumes == ["/cache/", "/var/lib/app"]
    assert config_from_json(config_to_json(result.config)).volumes == ["/cache/", "/var/lib/app"]
