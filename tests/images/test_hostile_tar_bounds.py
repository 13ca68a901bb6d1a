"""Hostile images that attack the reader rather than the root filesystem: headers tarfile
would read into memory, compressed streams that never end, sparse members, whiteouts that
name no file, names the kernel or a terminal cannot take. Each is refused with one sentence
(an `ImageRejected`, never a tool's 500 quoting the control plane's paths) and leaves
nothing in the store."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from pathlib import Path

import pytest

from tests.images.conftest import store_is_empty
from tests.images.imagekit import add_file, crafted_docker_archive, crafted_oci_archive, layer_tar, sha
from tre.config import Settings
from tre.images.errors import ImageRejected
from tre.images.store import ImageStore

MIB = 1 << 20


def _refused(store: ImageStore, archive: Path, *words: str) -> str:
    with pytest.raises(ImageRejected) as info:
        store.import_path(archive)
    reason = str(info.value)
    assert "\n" not in reason and str(store.root) not in reason and "/tmp" not in reason
    for w in words:
        assert w in reason, reason
    assert store_is_empty(store)
    return reason


def _gzip_with_zeros(head: bytes, zeros: int) -> tuple[bytes, str]:
    """``head`` then ``zeros`` zero bytes, gzip-compressed (a few KiB per 64 MiB), and the
    SHA-256 of the uncompressed whole (what a diff_id names)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    digest = hashlib.sha256(head)
    out = [comp.compress(head)]
    block = bytes(MIB)
    for _ in range(zeros // MIB):
        digest.update(block)
        out.append(comp.compress(block))
    out.append(comp.flush())
    return b"".join(out), "sha256:" + digest.hexdigest()


def _small_store(settings: Settings) -> ImageStore:
    """Layers of at most 1 MiB and 50 entries: a compliant layer's stream is then ~1.2 MiB."""
    return ImageStore(settings.model_copy(update={"image_max_layer_mb": 1, "image_max_files": 50}))


def test_a_huge_pax_header_in_a_layer_is_refused_unread(store: ImageStore, tmp_path: Path) -> None:
    """A 32 MiB PAX record gzips to ~32 KiB; tarfile would hold it in memory (a 400 KiB
    layer made the import allocate 2 GiB), and umoci then failed with a 500."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        info.pax_headers = {"comment": "A" * (32 * MIB)}
        tar.addfile(info, io.BytesIO(b"x"))
    layer = raw.getvalue()
    blob = zlib.compress(layer, 9, wbits=31)
    assert len(blob) < 200_000
    archive = crafted_oci_archive(tmp_path / "pax.tar", [blob], [sha(layer)])
    _refused(store, archive, "layer 1", "extended tar header", "more than 1 MiB")


def test_a_huge_pax_header_in_the_archive_itself_is_refused_unread(store: ImageStore, tmp_path: Path) -> None:
    archive = tmp_path / "outer.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        info.pax_headers = {"comment": "B" * (2 * MIB)}
        tar.addfile(info, io.BytesIO(b"[]"))
    _refused(store, archive, "extended tar header")


def test_a_layer_that_keeps_decompressing_after_its_tar_ends_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    """64 MiB of zeros after the end-of-archive record (and a diff_id that names them, so
    every hash matches): hashing them was unbounded work for a few KiB of upload."""
    store = _small_store(settings)
    blob, diff_id = _gzip_with_zeros(layer_tar(lambda t: add_file(t, "a.txt", b"a")), 64 * MIB)
    archive = crafted_oci_archive(tmp_path / "tail.tar", [blob], [diff_id])
    _refused(store, archive, "layer 1", "decompresses to more than")


def test_a_compressed_docker_layer_is_hashed_within_the_layer_bound(
    settings: Settings, tmp_path: Path
) -> None:
    store = _small_store(settings)
    blob, diff_id = _gzip_with_zeros(layer_tar(lambda t: add_file(t, "a.txt", b"a")), 64 * MIB)
    archive = crafted_docker_archive(tmp_path / "gz.tar", [blob], diff_ids=[diff_id])
    _refused(store, archive, "decompresses to more than")


def test_a_sparse_member_is_refused(store: ImageStore, tmp_path: Path) -> None:
    def add(t: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("holes")
        info.type = tarfile.GNUTYPE_SPARSE
        t.addfile(info)

    layer = layer_tar(add)
    _refused(store, crafted_docker_archive(tmp_path / "sparse.tar", [layer]), "sparse")


@pytest.mark.parametrize(
    "whiteout", [".wh.", ".wh..", ".wh...", "keep/.wh.", "keep/.wh...", "keep/.wh..wh.x"]
)
def test_a_whiteout_that_names_no_file_is_refused(store: ImageStore, tmp_path: Path, whiteout: str) -> None:
    """umoci applies `dir/.wh..` to the folder itself (`.wh...` to its parent) and failed
    with a 500 quoting the bundle's path on the control plane."""
    base = layer_tar(lambda t: (add_file(t, "keep/a.txt", b"a"), add_file(t, "top.txt", b"t")))
    upper = layer_tar(lambda t: add_file(t, whiteout, b""))
    _refused(store, crafted_docker_archive(tmp_path / "wh.tar", [base, upper]), "whiteout", "names no file")


def test_an_ordinary_whiteout_still_applies(store: ImageStore, tmp_path: Path) -> None:
    base = layer_tar(lambda t: (add_file(t, "keep/a.txt", b"a"), add_file(t, "top.txt", b"t")))
    upper = layer_tar(lambda t: add_file(t, "keep/.wh.a.txt", b""))
    result = store.import_path(crafted_docker_archive(tmp_path / "ok.tar", [base, upper]))
    root = store.rootfs(result.digest)
    assert (root / "top.txt").is_file() and not (root / "keep" / "a.txt").exists()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("a\nb.txt", "control characters"),
        ("a\x1b[2Jb", "control characters"),
        ("bad-\udcff.txt", "not UTF-8"),
        ("x" * 300, "longer than 255 bytes"),
        ("d/" * 1600 + "f", "longer than 3072 bytes"),
    ],
)
def test_names_the_kernel_or_a_terminal_cannot_take_are_refused(
    store: ImageStore, tmp_path: Path, name: str, words: str
) -> None:
    layer = layer_tar(lambda t: add_file(t, name))
    _refused(store, crafted_docker_archive(tmp_path / "names.tar", [layer]), "layer 1", words)


# --- the JSON documents skopeo parses: checked by size and count before it reads them ------


def _oci_with(dest: Path, manifest: bytes, config: bytes, layer: bytes, platforms: list[str] | None) -> Path:
    """An OCI archive of one image; with ``platforms``, behind an image index listing the
    manifest once per platform (``os/arch``)."""
    index_doc = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(manifest),
                "size": len(manifest),
            }
        ],
    }
    blobs = [config, manifest, layer]
    if platforms is not None:
        nested = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": sha(manifest),
                        "size": len(manifest),
                        "platform": {"os": p.split("/")[0], "architecture": p.split("/")[1]},
                    }
                    for p in platforms
                ],
            }
        ).encode()
        blobs.append(nested)
        index_doc["manifests"] = [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": sha(nested),
                "size": len(nested),
            }
        ]
    with tarfile.open(dest, "w") as tar:
        add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_file(tar, "index.json", json.dumps(index_doc).encode())
        for blob in blobs:
            add_file(tar, "blobs/sha256/" + sha(blob).removeprefix("sha256:"), blob)
    return dest


def _parts(pad: int = 0) -> tuple[bytes, bytes, bytes]:
    layer = layer_tar(lambda t: add_file(t, "a.txt", b"a"))
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}
    ).encode()
    manifest = (
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        + b" " * pad
    )
    return manifest, config, layer


def test_a_huge_manifest_is_refused_before_skopeo_reads_it(store: ImageStore, tmp_path: Path) -> None:
    manifest, config, layer = _parts(pad=5 * MIB)
    _refused(store, _oci_with(tmp_path / "big.tar", manifest, config, layer, None), "5 MiB of JSON")


def test_an_index_of_many_platforms_is_refused_and_a_small_one_imports(
    store: ImageStore, tmp_path: Path
) -> None:
    manifest, config, layer = _parts()
    many = ["linux/amd64", *(f"linux/arch{i}" for i in range(70))]
    _refused(store, _oci_with(tmp_path / "many.tar", manifest, config, layer, many), "more than 64 manifests")
    result = store.import_path(
        _oci_with(tmp_path / "two.tar", manifest, config, layer, ["linux/arm64", "linux/amd64"])
    )
    assert (store.rootfs(result.digest) / "a.txt").read_bytes() == b"a"


def test_an_index_without_this_hosts_platform_is_refused_cleanly(store: ImageStore, tmp_path: Path) -> None:
    manifest, config, layer = _parts()
    _refused(store, _oci_with(tmp_path / "arm.tar", manifest, config, layer, ["linux/arm64", "linux/s390x"]))


# --- the run-time config: what it may hand the sandbox launcher -----------------------------


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"Env": ["BIG=" + "x" * (200 << 10)]}, "too long"),
        ({"Env": [f"V{i}=1" for i in range(2000)]}, "more than 1024"),
        ({"Cmd": ["a" * (20 << 10)] * 20}, "too long"),
        ({"Env": ["A=b\u0000c"]}, "NUL"),
    ],
)
def test_a_config_no_job_could_start_with_is_refused(
    store: ImageStore,
    tmp_path: Path,
    config: dict,
    words: str,  # type: ignore[type-arg]
) -> None:
    """An Env entry over the kernel's 128 KiB argument limit (the launcher passes each with
    --setenv) imported fine and then failed every job at start."""
    layer = layer_tar(lambda t: add_file(t, "a.txt", b"a"))
    archive = crafted_oci_archive(
        tmp_path / "cfg.tar", [layer], [sha(layer)], "application/vnd.oci.image.layer.v1.tar", config
    )
    _refused(store, archive, "image config", words)


def test_root_user_and_preload_env_are_kept_for_the_sandbox_to_judge(
    store: ImageStore, tmp_path: Path
) -> None:
    """User 0 and LD_PRELOAD are not refused at import: the sandbox never grants root (the
    job gets uid 10001) and applies Env only inside, after --clearenv (tests/sandbox)."""
    layer = layer_tar(lambda t: add_file(t, "a.txt", b"a"))
    config = {"User": "0:0", "Env": ["LD_PRELOAD=/tmp/x.so", "PATH=/tmp:/usr/bin"]}
    archive = crafted_oci_archive(
        tmp_path / "ok.tar", [layer], [sha(layer)], "application/vnd.oci.image.layer.v1.tar", config
    )
    result = store.import_path(archive)
    assert result.config.user == "0:0" and result.config.env["LD_PRELOAD"] == "/tmp/x.so"


# --- media types that lie --------------------------------------------------------------------


def _zstd(data: bytes) -> bytes:
    """Compress with Debian's zstd command (scripts/install-system-deps)."""
    import shutil
    import subprocess

    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize(
    ("encode", "media_type", "words"),
    [
        (_zstd, "application/vnd.oci.image.layer.v1.tar+gzip", "not a readable tar stream"),
        (
            lambda b: zlib.compress(b, 9, wbits=31),
            "application/vnd.oci.image.layer.v1.tar",
            "not a readable tar",
        ),
        (_zstd, "application/vnd.oci.image.layer.v1.tar+zstd", "unsupported media type"),
    ],
)
def test_a_layer_whose_media_type_lies_is_refused(  # type: ignore[no-untyped-def]
    store: ImageStore, tmp_path: Path, encode, media_type: str, words: str
) -> None:
    """A zstd layer claimed as gzip, a gzip one claimed as plain tar: read as claimed, refused;
    zstd itself is not accepted (umoci 0.4.7 cannot unpack it)."""
    layer = layer_tar(lambda t: add_file(t, "a.txt", b"a"))
    archive = crafted_oci_archive(tmp_path / "mt.tar", [encode(layer)], [sha(layer)], media_type)
    _refused(store, archive, "layer 1", words)


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_layers_that_keep_decompressing_are_bounded_for_the_image_as_a_whole(
    settings: Settings, tmp_path: Path, fmt: str
) -> None:
    """Each layer's stream within its own bound (2 MiB of zeros after the tar's end, under
    the 2.4 MiB a 1 MiB layer of 100 entries may take), 70 of them: before, the whole image
    was decompressed and hashed however many there were (with the default bounds, 128
    layers of 5 MiB of gzip each were 665 GiB to decompress; redteam round 15). Now all
    layers together may take what the image's files, headers and padding can."""
    store = ImageStore(
        settings.model_copy(
            update={"image_max_layer_mb": 1, "image_max_files": 100, "image_max_unpacked_mb": 1}
        )
    )
    blobs, diff_ids = [], []
    for i in range(70):
        blob, diff_id = _gzip_with_zeros(layer_tar(lambda t, i=i: add_file(t, f"{i}.txt", b"a")), 2 * MIB)
        blobs.append(blob)
        diff_ids.append(diff_id)
    if fmt == "oci":
        archive = crafted_oci_archive(tmp_path / "tails.tar", blobs, diff_ids)
    else:
        archive = crafted_docker_archive(tmp_path / "tails.tar", blobs, diff_ids=diff_ids)
    _refused(store, archive, "the image's layers decompress to more than 129 MiB in all")


def test_an_image_of_many_layers_within_the_image_bound_imports(settings: Settings, tmp_path: Path) -> None:
    """The control case: the same layers without the zeros after their end import."""
    store = ImageStore(
        settings.model_copy(
            update={"image_max_layer_mb": 1, "image_max_files": 100, "image_max_unpacked_mb": 1}
        )
    )
    layers = [layer_tar(lambda t, i=i: add_file(t, f"{i}.txt", b"a" * 4096)) for i in range(70)]
    blobs = [zlib.compress(x, 9, wbits=31) for x in layers]
    result = store.import_path(crafted_oci_archive(tmp_path / "ok.tar", blobs, [sha(x) for x in layers]))
    assert result.layers == 70 and (store.rootfs(result.digest) / "69.txt").is_file()
