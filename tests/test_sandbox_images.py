"""Lints the job image Dockerfiles for the invariants the platform relies on.

Every FROM pinned by digest (a tag can be re-pointed after review); the final stage runs as
a fixed non-root numeric USER, has no RUN (distroless: no shell to run one), and the build
installs the `tre` package with its kernels, compiled into a Numba cache seed the job copies
at start-up (tre/kernels/numba_seed.py). The linter is checked against bad examples too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tre.kernels.numba_seed import SEED_ENV

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "sandbox_images").glob("Dockerfile.*"))
DIGEST_REF = re.compile(r"^[a-z0-9.\-/:]+@sha256:[0-9a-f]{64}$")


@dataclass
class Stage:
    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Instructions per stage, with line continuations joined and comments dropped."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            parts = rest.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], alias))
        elif stages:
            stages[-1].instructions.append((op, rest.strip()))
        else:
            raise ValueError(f"instruction before FROM: {line}")
    return stages


def lint(text: str) -> list[str]:
    errors: list[str] = []
    stages = parse(text)
    if not stages:
        return ["no FROM"]
    aliases = {s.alias for s in stages if s.alias}
    for s in stages:
        if s.base not in aliases and not DIGEST_REF.match(s.base):
            errors.append(f"base image not pinned by digest: {s.base}")
    final = stages[-1]
    users = [arg for op, arg in final.instructions if op == "USER"]
    if not users:
        errors.append("final stage has no USER")
    else:
        user = users[-1]
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or int(uid) == 0 or (gid and (not gid.isdigit() or int(gid) == 0)):
            errors.append(f"final USER must be a non-zero numeric uid[:gid], got {user!r}")
        elif int(uid) < 10000:
            errors.append(f"final USER uid should be >= 10000 (outside host uid ranges), got {uid}")
    if any(op == "RUN" for op, _ in final.instructions):
        errors.append("final stage must not RUN anything (no shell in the runtime image)")
    for s in stages:
        for op, arg in s.instructions:
            if op == "ADD" and re.search(r"https?://", arg):
                errors.append("ADD from a URL is unverifiable; download and check a hash in a RUN")
            if op == "RUN" and re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", arg):
                errors.append("piping a download into a shell")
            if op == "RUN" and "docker.sock" in arg:
                errors.append("docker.sock in a job image")
    runs = " ".join(arg for s in stages for op, arg in s.instructions if op == "RUN")
    if not re.search(r"pip install\b.*\"?\.\[kernels\]\"?", runs):
        errors.append("the tre package is not installed with its kernels (pip install .[kernels])")
    envs = " ".join(arg for op, arg in final.instructions if op == "ENV")
    if "HOME=/tmp" not in envs:
        errors.append("HOME must point at the writable /tmp (the root filesystem is read-only)")
    return errors + _seed_errors(runs, envs, final)


def _env(envs: str, name: str) -> str | None:
    found = re.search(rf"\b{name}=(\S+)", envs)
    return found.group(1) if found else None


def _seed_errors(runs: str, envs: str, final: Stage) -> list[str]:
    """The baked Numba cache (tre/kernels/numba_seed.py): compiled by the build from the very
    path the runtime imports the kernels from (Numba keys its cache by the source folder),
    copied into the final stage, named by TRE_NUMBA_CACHE_SEED, and copied at start-up into a
    NUMBA_CACHE_DIR on the writable /tmp (Numba will not use a read-only cache folder)."""
    errors: list[str] = []
    builds = re.findall(r"PYTHONPATH=(\S+) \S+ (?:-\w+ )*-m tre\.kernels\.numba_seed build (\S+)", runs)
    if re.search(r"python\S* -m tre\.kernels\.numba_seed build", runs):
        errors.append("the seed build must run with python -P (else it imports tre from the build folder)")
    seed = _env(envs, SEED_ENV)
    cache = _env(envs, "NUMBA_CACHE_DIR")
    if not builds or seed is None:
        return ["no baked Numba cache (numba_seed build + TRE_NUMBA_CACHE_SEED): every job compiles"]
    if seed not in [folder for _path, folder in builds]:
        errors.append("TRE_NUMBA_CACHE_SEED is not the folder the build compiles the kernels into")
    if any(path != _env(envs, "PYTHONPATH") for path, _folder in builds):
        errors.append("the seed is compiled from another path than the runtime's PYTHONPATH")
    copied = [arg.split()[-2] for op, arg in final.instructions if op == "COPY" and "--from=" in arg]
    if not any(seed == src or seed.startswith(src.rstrip("/") + "/") for src in copied):
        errors.append("the Numba cache seed is not copied into the final stage")
    if cache is None or not cache.startswith("/tmp/"):
        errors.append("NUMBA_CACHE_DIR must be on the writable /tmp")
    return errors


def test_there_are_cpu_and_cuda_images() -> None:
    assert {p.name for p in IMAGES} >= {"Dockerfile.cpu", "Dockerfile.cuda"}


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_dockerfile_invariants(path: Path) -> None:
    assert lint(path.read_text()) == []


def test_images_share_the_same_pinned_bases() -> None:
    bases = [tuple(s.base for s in parse(p.read_text())) for p in IMAGES]
    assert len(set(bases)) == 1, bases


def test_cuda_image_brings_cuda_user_space_but_no_gpus_by_default() -> None:
    text = (ROOT / "sandbox_images" / "Dockerfile.cuda").read_text()
    assert "numba-cuda[cu12]" in text
    # Only the device plugin / --gpus may expose GPUs; the image itself asks for none.
    assert "NVIDIA_VISIBLE_DEVICES=void" in text


GOOD = """\
FROM python:3.11-slim@sha256:{d} AS build
RUN pip install --target /opt/tre/site ".[kernels]"
RUN PYTHONPATH=/opt/tre/site python3 -P -m tre.kernels.numba_seed build /opt/tre/seed
FROM gcr.io/distroless/python3-debian12@sha256:{d}
COPY --from=build /opt/tre /opt/tre
ENV HOME=/tmp PYTHONPATH=/opt/tre/site NUMBA_CACHE_DIR=/tmp/nc TRE_NUMBA_CACHE_SEED=/opt/tre/seed
USER 10001:10001
""".format(d="a" * 64)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (GOOD.replace("python:3.11-slim@sha256:" + "a" * 64, "python:3.11-slim"), "not pinned by digest"),
        (GOOD.replace("USER 10001:10001", "USER root"), "non-zero numeric"),
        (GOOD.replace("USER 10001:10001", "USER 0:0"), "non-zero numeric"),
        (GOOD.replace("USER 10001:10001\n", ""), "no USER"),
        (GOOD.replace("USER 10001:10001", "USER 1000"), ">= 10000"),
        (GOOD + "RUN rm -rf /bin\n", "must not RUN"),
        (GOOD.replace('".[kernels]"', "numpy"), "kernels"),
        (GOOD + "ADD https://example.org/x.tgz /x\n", "ADD from a URL"),
        (GOOD.replace("ENV HOME=/tmp", "ENV A=b"), "HOME"),
        (GOOD.replace(" TRE_NUMBA_CACHE_SEED=/opt/tre/seed", ""), "no baked Numba cache"),
        (GOOD.replace("SEED=/opt/tre/seed", "SEED=/opt/tre/other"), "not the folder the build"),
        (GOOD.replace("PYTHONPATH=/opt/tre/site python3", "PYTHONPATH=/src python3"), "another path"),
        (GOOD.replace("python3 -P -m", "python3 -m"), "python -P"),
        (GOOD.replace("/opt/tre /opt/tre", "/opt/tre/site /opt/tre/site"), "not copied into the final"),
        (GOOD.replace("NUMBA_CACHE_DIR=/tmp/nc", "NUMBA_CACHE_DIR=/opt/nc"), "writable /tmp"),
    ],
)
def test_linter_catches_violations(bad: str, expected: str) -> None:
    assert lint(GOOD) == []
    assert any(expected in e for e in lint(bad)), lint(bad)
