"""The control plane's own image (API, worker, CLI), built on this machine without Docker.

What `k8s/base` runs as ``ghcr.io/tre-project/tre@sha256:...``: the API (`tre serve`), the
worker (`tre worker`, probed with `python -c "import tre.executors.kubernetes"`) and the
job pods' `fetch-code` init container (`python3 -I -m tre.code.fetch`), all as uid 10001
with a read-only root file system and only `/tmp` and `/var/lib/tre` writable.

Built like the job image (`tre.images.jobimage`, whose code it reuses): a Debian root file
system from mmdebstrap with the interpreter and the few programs the control plane runs
(skopeo and umoci for image imports, tesseract for the airlock's OCR check, CA
certificates for the OpenID provider), tre's Python dependencies as wheels pinned to this
host's versions (`tre.images.python_layer`), and the `tre` and `egress_review` packages
with the policies and a `tre` command. No compiler, no pip, no package manager's caches.
The packages go into Debian's `/usr/local/lib/python3.11/dist-packages`, on the default
`sys.path`, because `python3 -I` (the init container) ignores ``PYTHONPATH``.

The result is an OCI archive (``oci-archive:``) whose manifest digest the operator pins in
the manifests (`kustomize edit set image`, docs/deploy.md); its Dockerfile twin is
`sandbox_images/control-plane/Dockerfile`. The layout is cached by the hash of its recipe.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tre import __version__
from tre.config import Settings
from tre.images import python_layer
from tre.images.errors import ImageToolError
from tre.images.jobimage import SUITE, _bwrap_argv, base_recipe, debian_base, write_files_layer
from tre.images.tools import run_tool, umoci_unpack

NAME = "ghcr.io/tre-project/tre"
# python-is-python3: the worker's probes call `python`; ca-certificates: HTTPS to the
# OpenID provider and registries; skopeo, umoci: image imports and pushes (tre.images);
# tesseract-ocr: the airlock's OCR check (egress_review.checks.ocr); libstdc++6: wheels'
# C++ runtime (onnxruntime, pyarrow).
PACKAGES = (
    "python3",
    "python-is-python3",
    "libstdc++6",
    "ca-certificates",
    "skopeo",
    "umoci",
    "tesseract-ocr",
)
SITE = "usr/local/lib/python3.11/dist-packages"
POLICIES = "opt/tre/policies"
STATE = "/var/lib/tre"
TMP = "/tmp"  # noqa: S108 - the container's own memory-backed /tmp (an emptyDir), not the host's
PORT = 8765
USER = "10001:10001"
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",  # the root file system is read-only
    "HOME": TMP,
    "TRE_HOME": STATE,
    "TRE_CACHE_DIR": f"{TMP}/tre-cache",
    "TRE_POLICIES_DIR": f"/{POLICIES}",
}
# The `tre` console script (pip's would name the build host's interpreter).
TRE_COMMAND = b"#!/usr/bin/python3\nimport sys\n\nfrom tre.cli.main import run\n\nsys.exit(run())\n"
# Mount points and writable folders of the running container: /tmp and the state volume are
# mounted over these; /proc, /dev for a sandbox started on the unpacked root (smoke test).
FOLDERS = {"tmp": 0o1777, "var/lib/tre": 0o755, "proc": 0o555, "dev": 0o755}
REPO = Path(__file__).resolve().parents[2]
PACKAGES_DIRS = ("tre", "egress_review")


def python_requirements() -> list[str]:
    """tre's own dependencies (pyproject.toml, no extras), closed and pinned to this host's."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return python_layer.requirements(project["dependencies"])


def image_files() -> dict[str, tuple[bytes, int]]:
    """Path in the image -> (content, mode): the packages (with their templates, static files
    and migrations), the policies and the `tre` command; no caches."""
    files: dict[str, tuple[bytes, int]] = {}
    for package in PACKAGES_DIRS:
        for path in sorted((REPO / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[f"{SITE}/{path.relative_to(REPO).as_posix()}"] = (path.read_bytes(), 0o644)
    for path in sorted((REPO / "policies").rglob("*")):
        if path.is_file():
            files[f"{POLICIES}/{path.relative_to(REPO / 'policies').as_posix()}"] = (path.read_bytes(), 0o644)
    files["usr/local/bin/tre"] = (TRE_COMMAND, 0o755)
    return files


def recipe() -> dict[str, object]:
    return {
        **base_recipe(PACKAGES),
        "python_packages": python_requirements(),
        "env": ENV,
        "user": USER,
        "port": PORT,
        "folders": {k: oct(v) for k, v in FOLDERS.items()},
        "files": {name: hashlib.sha256(data).hexdigest() for name, (data, _mode) in image_files().items()},
    }


@dataclass(frozen=True)
class ControlImage:
    layout: Path  # the cached OCI layout (tag ``image``)
    archive: Path
    digest: str  # the manifest's, what the manifests pin
    size: int  # bytes of the archive (compressed layers)
    cached: bool
    seconds: float


def build_control_image(settings: Settings, archive: Path) -> ControlImage:
    """Build (or take from the cache) the control-plane image and write it to ``archive`` as
    an OCI archive tagged with tre's version; the digest is read back from the archive."""
    started = time.monotonic()
    key = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()
    root = settings.cache_dir / "control-image"
    layout = root / key / "layout"
    cached = (layout / "index.json").is_file()
    if not cached:
        root.mkdir(parents=True, exist_ok=True)
        _build_layout(root, layout)
    digest = layout_digest(layout)
    archive = archive.resolve()
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    run_tool(["skopeo", "copy", "--quiet", f"oci:{layout}:image", f"oci-archive:{partial}:{__version__}"])
    read_back = _manifest_digest(partial)
    if read_back != digest:
        partial.unlink(missing_ok=True)
        raise ImageToolError(f"the archive's manifest is {read_back}, not the layout's {digest}")
    partial.rename(archive)
    return ControlImage(layout, archive, digest, archive.stat().st_size, cached, time.monotonic() - started)


def layout_digest(layout: Path) -> str:
    """The manifest digest of the layout's only image."""
    manifests = json.loads((layout / "index.json").read_text())["manifests"]
    if len(manifests) != 1:
        raise ImageToolError(f"expected one image in {layout}, found {len(manifests)}")
    return str(manifests[0]["digest"])


def _manifest_digest(archive: Path) -> str:
    """The digest of the manifest bytes as stored in an OCI archive (skopeo's `Digest`)."""
    return str(json.loads(run_tool(["skopeo", "inspect", f"oci-archive:{archive}"]))["Digest"])


def _build_layout(root: Path, layout: Path) -> None:
    base_key = hashlib.sha256(json.dumps(base_recipe(PACKAGES), sort_keys=True).encode()).hexdigest()
    base = root / f"base-{base_key}.tar"
    reqs = python_requirements()
    py_key = hashlib.sha256(json.dumps([python_layer.PYTHON_VERSION, reqs]).encode()).hexdigest()
    packages = root / f"python-{py_key}.tar"
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        work = Path(tmp)
        if not base.is_file():
            debian_base(work / "base.tar", PACKAGES)
            (work / "base.tar").rename(base)
        if not packages.is_file():
            python_layer.write_layer(work / "python.tar", SITE, reqs)
            (work / "python.tar").rename(packages)
        own = work / "tre.tar"
        write_files_layer(own, image_files(), folders=FOLDERS)
        built = work / "layout"
        ref = f"{built}:image"
        run_tool(["umoci", "init", "--layout", str(built)])
        run_tool(["umoci", "new", "--image", ref])
        for layer in (base, packages, own):
            run_tool(["umoci", "raw", "add-layer", "--image", ref, str(layer)], timeout_s=3600)
        config = ["umoci", "config", "--image", ref, "--author", "tre", "--config.user", USER]
        config += ["--config.workingdir", TMP, "--config.exposedports", f"{PORT}/tcp"]
        config += ["--config.volume", STATE, "--config.cmd", "tre", "--config.cmd", "--help"]
        config += ["--config.label", f"org.opencontainers.image.version={__version__}"]
        config += ["--config.label", f"org.opencontainers.image.base.name=debian:{SUITE}"]
        for k, v in ENV.items():
            config += ["--config.env", f"{k}={v}"]
        run_tool(config)
        run_tool(["umoci", "gc", "--layout", str(built)])
        layout.parent.mkdir(parents=True, exist_ok=True)
        built.rename(layout)


def smoke_test(layout: Path, timeout_s: float = 120) -> list[str]:
    """Start the image's commands the way the manifests do, under bubblewrap: read-only root,
    uid 10001, a private /tmp, a scratch folder as /var/lib/tre. Returns what each step showed;
    raises `ImageToolError` naming the first step that failed."""
    steps: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tre-control-smoke-") as tmp:
        bundle, state = Path(tmp) / "bundle", Path(tmp) / "state"
        state.mkdir()
        umoci_unpack(layout, bundle)
        argv = _bwrap_argv(bundle / "rootfs", [("--bind", state, STATE)], ENV, user=USER, share_net=True)

        def step(what: str, command: list[str], expect: str) -> None:
            proc = subprocess.run(
                [*argv, *command], capture_output=True, text=True, timeout=timeout_s, check=False
            )
            out = proc.stdout + proc.stderr
            if proc.returncode != 0 or expect not in out:
                tail = out.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
                raise ImageToolError(f"{what} failed in the control-plane image: {tail[0][:300]}")
            steps.append(f"{what}: ok")

        step("tre --help", ["tre", "--help"], "trusted research environment")
        step("worker probe", ["python", "-c", "import tre.executors.kubernetes; print('ok')"], "ok")
        step("fetch-code", ["python3", "-I", "-m", "tre.code.fetch", "--help"], "--sha256")
        step("read-only root", ["python3", "-c", _READ_ONLY_PROBE], "read-only")
        steps.append(_serve(argv, timeout_s))
    return steps


_READ_ONLY_PROBE = """
import os
try:
    open('/usr/local/bin/x', 'w')
except OSError:
    print('read-only', os.getuid())
"""


def _serve(argv: list[str], timeout_s: float) -> str:
    """`tre serve` as the API Deployment runs it (without its worker), until it answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    command = ["tre", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"]
    proc = subprocess.Popen([*argv, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout_s:
            if proc.poll() is not None:
                tail = (proc.stdout.read() if proc.stdout else "").strip().splitlines()[-1:] or [""]
                raise ImageToolError(f"tre serve stopped in the control-plane image: {tail[0][:300]}")
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            if answer.status_code != 200:
                raise ImageToolError(f"tre serve answered /docs with {answer.status_code}")
            return f"tre serve: /docs answered 200 after {time.monotonic() - started:.1f} s"
        raise ImageToolError(f"tre serve did not answer within {timeout_s:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
