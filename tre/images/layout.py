"""Verify an OCI image layout ourselves, never on a tool's word: the index names one
manifest; the manifest, the config and every layer blob hash to their digests and have
their declared sizes; the config's diff_ids match the layers' content; the layers hold
nothing hostile (`tre.images.layers`).
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from tre.executors.base import ImageConfig, is_env_name
from tre.images.errors import ImageRejected
from tre.images.layers import GZIP_TYPES, PLAIN_TYPES, LayerScan, TreeGuard, scan_layer
from tre.images.limits import ImageLimits
from tre.images.reference import DIGEST_RE, printable

MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
LAYER_TYPES = PLAIN_TYPES | GZIP_TYPES
MAX_JSON_BLOB = 4 << 20
# What the run-time config may hand the sandbox launcher: the kernel refuses a single
# argument over 128 KiB (MAX_ARG_STRLEN) and an argv+environment over a few MiB, so a
# longer Env or command line would only fail every job at start, not run.
MAX_CONFIG_STRINGS = 1024
MAX_CONFIG_STRING_BYTES = 32 << 10
MAX_CONFIG_TOTAL_BYTES = 256 << 10


@dataclass
class VerifiedImage:
    digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: int
    size: int
    scan: LayerScan = field(default_factory=LayerScan)

    @property
    def image_config(self) -> ImageConfig:
        return image_config_of(self.config)

    @property
    def created(self) -> str:
        """The config's own claim of when the image was built, as UTC ``...T...Z`` to the
        second; "" when it is missing or not a time every reader can show.

        Kept as written before: ``0001-01-01T00:00:00+23:59`` is a time to Go (umoci and
        skopeo took it) and to ``datetime.fromisoformat``, but in UTC it falls before the
        year 1, and `tre image list` ended in OverflowError for everyone who could see the
        image, admins included (redteam round 19)."""
        value = self.config.get("created")
        if not isinstance(value, str):
            return ""
        try:
            at = datetime.fromisoformat(value[:64])
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        except (ValueError, OverflowError):
            return ""
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def blob_path(layout: Path, digest: str) -> Path:
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ImageRejected(digest_problem(digest, "the image names a blob"))
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def digest_problem(digest: Any, what: str) -> str:
    """Why ``digest`` is refused, for a researcher: another algorithm (sha512, which OCI
    allows and our store, skopeo's layouts and the registry path do not use) is named as such."""
    algorithm, sep, rest = str(digest).partition(":")
    if sep and rest and algorithm.isalnum() and algorithm != "sha256":
        return (
            f"{what} by a {printable(algorithm, 16)} digest: only sha256 digests are supported "
            "(re-export the image with docker save or skopeo copy, which write sha256)"
        )
    return f"{what} with a malformed digest {printable(str(digest), 80)!r}"


# Layer media types whose bytes are not in the image (or not in a form umoci 0.4 unpacks).
_FOREIGN = ("foreign", "nondistributable")


def check_layer_count(count: int, limits: ImageLimits) -> None:
    """Refuse more layers than `ImageLimits.max_layers`, before any layer is read."""
    if count > limits.max_layers:
        raise ImageRejected(
            f"the image has {count} layers, more than the {limits.max_layers} allowed: "
            "rebuild it with fewer layers (fewer RUN steps, or squash it)"
        )


def check_layer_descriptors(layers: Any, limits: ImageLimits) -> None:
    """Refuse a manifest's layer list before any blob is read, each reason with its remedy:
    too many layers, a layer that names URLs to fetch it from (foreign/non-distributable:
    skopeo copies only the descriptor, and the TRE fetches nothing from the network), a
    media type umoci cannot unpack (zstd), a digest that is not sha256. Used before skopeo
    parses an OCI archive's manifest and again on the layout skopeo wrote."""
    if not isinstance(layers, list) or not layers:
        raise ImageRejected("the image manifest lists no layers")
    check_layer_count(len(layers), limits)
    for i, layer in enumerate(layers):
        what = f"layer {i + 1}"
        if not isinstance(layer, dict):
            raise ImageRejected(f"the image manifest's {what} descriptor is malformed")
        media_type = str(layer.get("mediaType"))
        if layer.get("urls") is not None or any(word in media_type for word in _FOREIGN):
            raise ImageRejected(
                f"{what} is a foreign or non-distributable layer (its bytes live at URLs outside "
                "the image): the TRE fetches nothing from the network; rebuild the image on a base "
                "whose layers are all in it"
            )
        if media_type not in LAYER_TYPES:
            raise ImageRejected(
                f"{what} has the unsupported media type {printable(media_type)!r}: only tar and "
                "tar+gzip layers are (re-export with skopeo copy --dest-compress-format=gzip)"
            )
        if not isinstance(layer.get("digest"), str) or not DIGEST_RE.match(layer["digest"]):
            raise ImageRejected(digest_problem(layer.get("digest"), f"the image names its {what}"))


def _verify_blob(layout: Path, descriptor: Any, what: str) -> Path:
    if not isinstance(descriptor, dict):
        raise ImageRejected(f"the image's {what} descriptor is malformed")
    digest, size = descriptor.get("digest"), descriptor.get("size")
    path = blob_path(layout, str(digest))
    if not path.is_file():
        raise ImageRejected(f"the image's {what} blob {digest} is missing")
    h = hashlib.sha256()
    actual = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            actual += len(chunk)
    if "sha256:" + h.hexdigest() != digest:
        raise ImageRejected(f"digest mismatch: the image's {what} blob does not hash to {digest}")
    if size != actual:
        raise ImageRejected(f"size mismatch: the image's {what} blob is {actual} bytes, not {size}")
    return path


def _json_blob(path: Path, what: str) -> dict[str, Any]:
    if path.stat().st_size > MAX_JSON_BLOB:
        raise ImageRejected(f"the image's {what} is implausibly large")
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        raise ImageRejected(f"the image's {what} is not valid JSON") from None
    except RecursionError:  # Go's reader (skopeo) takes 10,000 levels, Python's about 1,000
        raise ImageRejected(f"the image's {what} is JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise ImageRejected(f"the image's {what} is not a JSON object")
    return doc


def manifest_descriptor(layout: Path) -> dict[str, Any]:
    index = _json_blob(layout / "index.json", "index")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or len(manifests) != 1 or not isinstance(manifests[0], dict):
        raise ImageRejected("the image index must name exactly one image manifest")
    desc: dict[str, Any] = manifests[0]
    if desc.get("mediaType") not in MANIFEST_TYPES:
        kind = printable(str(desc.get("mediaType")))
        raise ImageRejected(f"the image index names a {kind!r}, not a single-platform manifest")
    return desc


def verify_layout(layout: Path, limits: ImageLimits) -> VerifiedImage:
    desc = manifest_descriptor(layout)
    manifest = _json_blob(_verify_blob(layout, desc, "manifest"), "manifest")
    config_desc = manifest.get("config")
    config = _json_blob(_verify_blob(layout, config_desc, "config"), "config")
    check_platform(config)
    layers = manifest.get("layers")
    check_layer_descriptors(layers, limits)
    assert isinstance(layers, list)
    diff_ids = (
        (config.get("rootfs") or {}).get("diff_ids") if isinstance(config.get("rootfs"), dict) else None
    )
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise ImageRejected("digest mismatch: the config's diff_ids do not match the manifest's layers")
    size = int(desc.get("size") or 0) + int(config_desc.get("size") or 0)  # type: ignore[union-attr]
    guard, scan = TreeGuard(), LayerScan()
    for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
        path = _verify_blob(layout, layer, f"layer {i + 1}")
        size += int(layer["size"])
        scan_layer(path, str(layer.get("mediaType")), str(diff_id), i, limits, guard, scan)
    check_run_config(image_config_of(config))
    return VerifiedImage(
        digest=str(desc["digest"]), manifest=manifest, config=config, layers=len(layers), size=size, scan=scan
    )


# platform.machine() -> the GOARCH names image configs use.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}


def host_architecture() -> str:
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


def check_platform(config: dict[str, Any]) -> None:
    """Refuse an image built for another OS or CPU than the one jobs run on here.

    A researcher on an Apple-silicon laptop builds linux/arm64 by default: such an image
    imported fine, though the kernel here cannot execute its programs ("exec format error"
    in every job; review round 12). An
    image index already resolves to this host's platform (skopeo picks it); a single image
    says its platform in its config. A config without ``architecture`` is left to run."""
    system, arch = config.get("os"), config.get("architecture")
    host = host_architecture()
    if (isinstance(system, str) and system and system != "linux") or (
        isinstance(arch, str) and arch and arch != host
    ):
        built = f"{printable(str(system or '?'), 16)}/{printable(str(arch or '?'), 16)}"
        raise ImageRejected(
            f"the image is built for {built}, and jobs here run on linux/{host}: rebuild it "
            f"for linux/{host} (docker build --platform linux/{host})"
        )


def check_run_config(cfg: ImageConfig) -> None:
    """Refuse a config whose Env, Entrypoint, Cmd, WorkingDir or User could not reach a job:
    too many strings, one too long, too much in all, a NUL (the launcher passes each as
    an argument), or an Env name that is not a shell identifier (the sandbox refuses it at
    every start: ``A.B=1`` imported and then failed every job; redteam round 14)."""
    strings = [
        *(f"{k}={v}" for k, v in cfg.env.items()),
        *cfg.entrypoint,
        *cfg.cmd,
        cfg.working_dir,
        cfg.user,
    ]
    if len(strings) > MAX_CONFIG_STRINGS:
        raise ImageRejected(f"the image config has more than {MAX_CONFIG_STRINGS} Env and command entries")
    sizes = [len(s.encode("utf-8", "surrogatepass")) for s in strings]
    if any(size > MAX_CONFIG_STRING_BYTES for size in sizes) or sum(sizes) > MAX_CONFIG_TOTAL_BYTES:
        raise ImageRejected(
            f"the image config's Env or command is too long (at most {MAX_CONFIG_STRING_BYTES >> 10} KiB "
            f"an entry, {MAX_CONFIG_TOTAL_BYTES >> 10} KiB in all)"
        )
    if any("\0" in s for s in strings):
        raise ImageRejected("the image config's Env or command holds a NUL character")
    bad = sorted(name for name in cfg.env if not is_env_name(name))
    if bad:
        raise ImageRejected(
            f"the image config's Env has the environment variable name {printable(bad[0], 64)!r}, "
            "which the job sandbox cannot set: use letters, digits and underscores, not starting "
            "with a digit"
        )
    check_volumes(cfg.volumes)


MAX_CONFIG_VOLUMES = 32


def check_volumes(volumes: list[str]) -> None:
    """Refuse declared ``Volumes`` that cannot be masked: each must be a plain absolute path
    (no ``..``, no control characters, at most 1 KiB), not ``/``, and there may be at most
    32. Docker and Kubernetes cover each with an empty read-only mount (redteam round 11)."""
    if len(volumes) > MAX_CONFIG_VOLUMES:
        raise ImageRejected(f"the image config declares more than {MAX_CONFIG_VOLUMES} Volumes")
    for raw in volumes:
        path = PurePosixPath(raw)
        if (
            not raw.startswith("/")
            or ".." in path.parts
            or str(path) == "/"
            or len(raw.encode("utf-8", "surrogatepass")) > 1024
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw)
        ):
            raise ImageRejected("the image config declares a volume that is not a plain absolute path")


def image_config_of(config: dict[str, Any]) -> ImageConfig:
    """The run-time fields of an OCI image config, type-checked (the image chose them)."""
    c = config.get("config") or {}
    if not isinstance(c, dict):
        c = {}

    def strings(value: Any) -> list[str]:
        return [str(v) for v in value] if isinstance(value, list) else []

    env: dict[str, str] = {}
    for item in strings(c.get("Env")):
        key, sep, value = item.partition("=")
        if sep and key:
            env[key] = value
    volumes = c.get("Volumes")
    return ImageConfig(
        env=env,
        entrypoint=strings(c.get("Entrypoint")),
        cmd=strings(c.get("Cmd")),
        working_dir=str(c.get("WorkingDir") or ""),
        user=str(c.get("User") or ""),
        volumes=sorted(str(v) for v in volumes) if isinstance(volumes, dict) else [],
    )


def config_to_json(cfg: ImageConfig) -> dict[str, Any]:
    return {
        "env": cfg.env,
        "entrypoint": cfg.entrypoint,
        "cmd": cfg.cmd,
        "working_dir": cfg.working_dir,
        "user": cfg.user,
        "volumes": cfg.volumes,
    }


def config_from_json(data: dict[str, Any]) -> ImageConfig:
    return ImageConfig(
        env=dict(data.get("env") or {}),
        entrypoint=list(data.get("entrypoint") or []),
        cmd=list(data.get("cmd") or []),
        working_dir=str(data.get("working_dir") or ""),
        user=str(data.get("user") or ""),
        volumes=[str(v) for v in data.get("volumes") or []],
    )
