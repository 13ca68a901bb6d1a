"""Every Env entry an image import accepts is one the local sandbox can set (redteam round
14). The sandbox refuses names that are not shell identifiers, so an image declaring
``A.B=1``, ``1A=1`` or ``A-B=1`` imported, was approved, and then failed every job at start
with "invalid environment variable"; a name ending in a line break passed both. The import
now refuses such a config with its reason, as it does an Env no launcher could pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images.imagekit import add_file, crafted_oci_archive, layer_tar, sha
from tre.executors.base import ExecutorError, JobSpec
from tre.executors.bwrap import sandbox_env
from tre.images.errors import ImageRejected
from tre.images.store import ImageStore

NAMES = ["A.B", "1A", "A-B", "A B", "A\n", "\nA", "\u00c9T\u00c9", "OK_NAME", "_x9", "PATH", "LD_PRELOAD"]


@pytest.mark.parametrize("name", NAMES, ids=[repr(n) for n in NAMES])
def test_an_env_name_the_import_accepts_is_one_the_sandbox_sets(
    store: ImageStore, tmp_path: Path, name: str
) -> None:
    layer = layer_tar(lambda t: add_file(t, "a.txt", b"a"))
    archive = crafted_oci_archive(
        tmp_path / "env.tar",
        [layer],
        [sha(layer)],
        "application/vnd.oci.image.layer.v1.tar",
        {"Env": [f"{name}=1"]},
    )
    try:
        result = store.import_path(archive)
    except ImageRejected as exc:
        assert "environment variable name" in str(exc) and "\n" not in str(exc)
        return
    spec = JobSpec("j", "p", "img", ["true"], [], tmp_path / "out", tmp_path / "log")
    try:
        env = sandbox_env(spec, "/usr/bin:/bin", {}, image_env=result.config.env)
    except ExecutorError as exc:
        pytest.fail(f"imported, but no job can start with it: {exc}")
    assert env[name] == "1"


def test_ordinary_names_still_import(store: ImageStore, tmp_path: Path) -> None:
    """The control: what real images declare (PATH, LANG, PYTHON_VERSION, NVIDIA_...)."""
    layer = layer_tar(lambda t: add_file(t, "a.txt", b"a"))
    env = [
        "PATH=/usr/local/bin:/usr/bin",
        "LANG=C.UTF-8",
        "PYTHON_VERSION=3.12.1",
        "NVIDIA_VISIBLE_DEVICES=all",
    ]
    archive = crafted_oci_archive(
        tmp_path / "ok.tar", [layer], [sha(layer)], "application/vnd.oci.image.layer.v1.tar", {"Env": env}
    )
    assert store.import_path(archive).config.env["PYTHON_VERSION"] == "3.12.1"
