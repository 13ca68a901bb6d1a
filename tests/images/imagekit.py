"""Build real tiny images for the tests: busybox-static plus a marker file, packed by umoci
and exported by skopeo; and hand-crafted archives (tarfile + hand-written manifest and
config) for the hostile cases."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
MARKER = "tre-image-marker-7f3a"


def have_tools() -> bool:
    return all(shutil.which(t) for t in ("umoci", "skopeo")) and BUSYBOX.is_file()


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def build_busybox_layout(work: Path, env: str = "TRE_IMAGE_ENV=from-image") -> Path:
    """An OCI layout (tag ``base``): /bin/busybox, /bin/sh, /marker.txt, one Env entry."""
    layout, bundle = work / "layout", work / "bundle"
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:base")
    _run("umoci", "unpack", "--rootless", "--image", f"{layout}:base", str(bundle))
    root = bundle / "rootfs"
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "marker.txt").write_text(MARKER + "\n")
    _run("umoci", "repack", "--image", f"{layout}:base", str(bundle))
    _run(
        "umoci",
        "config",
        "--image",
        f"{layout}:base",
        "--config.env",
        env,
        "--config.workingdir",
        "/",
        "--config.cmd",
        "/bin/sh",
    )
    _run("umoci", "gc", "--layout", str(layout))
    return layout


def docker_archive(layout: Path, dest: Path, name: str = "tre-test/marker:1") -> Path:
    _run("skopeo", "copy", "--quiet", f"oci:{layout}:base", f"docker-archive:{dest}:{name}")
    return dest


def oci_archive(layout: Path, dest: Path) -> Path:
    _run("skopeo", "copy", "--quiet", f"oci:{layout}:base", f"oci-archive:{dest}:base")
    return dest


# -- hand-crafted archives ----------------------------------------------------------------------
def layer_tar(add: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar)
    return buf.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    tar.addfile(info)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def crafted_docker_archive(
    dest: Path,
    layers: list[bytes],
    diff_ids: list[str] | None = None,
    tag: str = "evil/image:1",
    platform: tuple[str, str] = ("linux", "amd64"),
) -> Path:
    """A `docker save` archive written by hand; ``diff_ids`` may lie about the layers."""
    config = json.dumps(
        {
            "architecture": platform[1],
            "os": platform[0],
            "config": {"Env": ["A=1"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(x) for x in layers]},
        }
    ).encode()
    config_name = sha(config).removeprefix("sha256:") + ".json"
    layer_names = [f"{i:02d}/layer.tar" for i in range(len(layers))]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]).encode()
    with tarfile.open(dest, "w") as tar:
        add_file(tar, config_name, config)
        for name, data in zip(layer_names, layers, strict=True):
            add_file(tar, name, data)
        add_file(tar, "manifest.json", manifest)
    return dest


def crafted_oci_archive(
    dest: Path,
    blobs: list[bytes],
    diff_ids: list[str],
    media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip",
    config_extra: dict[str, object] | None = None,
    edit_manifest: Callable[[dict[str, Any]], None] | None = None,
    platform: tuple[str, str] = ("linux", "amd64"),
    edit_config: Callable[[bytes], bytes] | None = None,
) -> Path:
    """An OCI archive written by hand: layer ``blobs`` as stored (e.g. gzip) with the
    ``diff_ids`` of their uncompressed content, one manifest (``edit_manifest`` may change
    it before it is hashed), one index entry; ``edit_config`` may rewrite the config's bytes
    (JSON no dict can be dumped as, such as a hostile nesting depth)."""
    config = json.dumps(
        {
            "architecture": platform[1],
            "os": platform[0],
            "config": {"Cmd": ["/bin/sh"], **(config_extra or {})},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    if edit_config is not None:
        config = edit_config(config)
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(config),
            "size": len(config),
        },
        "layers": [{"mediaType": media_type, "digest": sha(b), "size": len(b)} for b in blobs],
    }
    if edit_manifest is not None:
        edit_manifest(manifest_doc)
    manifest = json.dumps(manifest_doc).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha(manifest),
                    "size": len(manifest),
                }
            ],
        }
    ).encode()
    with tarfile.open(dest, "w") as tar:
        add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_file(tar, "index.json", index)
        for blob in (config, manifest, *blobs):
            add_file(tar, "blobs/sha256/" + sha(blob).removeprefix("sha256:"), blob)
    return dest
