"""An image that passes import but asks for what it must not get, run for real: imported
through the image store (checked, unpacked by umoci, sanitised, 0700 store) and started by
the local sandbox as the job user. Its top-level `data`, `output`, `code` and `tmp` are
symbolic links to `/etc` and `/`, its User is root, its Env preloads a library and moves
PATH; a setuid copy of busybox is in it. The job still gets uid 10001, the real dataset at
/data and its own /output, no setuid bit, and a read-only root that a second job finds
unchanged (two jobs share the unpacked root, never writably)."""

from __future__ import annotations

import os
import stat
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.images.imagekit import add_file, crafted_oci_archive, layer_tar, sha
from tests.sandbox.conftest import Sandbox
from tests.sandbox.test_sandbox_image import BUSYBOX, job_user_ids
from tre.config import Settings
from tre.executors.base import DatasetMount
from tre.executors.local import LocalExecutor
from tre.images.store import ImageStore


def _hostile_layer() -> bytes:
    data = BUSYBOX.read_bytes()

    def add(t: tarfile.TarFile) -> None:
        for name in ("bin", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        add_file(t, "bin/busybox", data, mode=0o755)
        add_file(t, "bin/suid-busybox", data, mode=0o4755)
        for applet in ("sh", "id", "cat", "echo", "ls", "stat", "test"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(link)
        add_file(t, "etc/passwd", b"root:x:0:0::/:/bin/sh\n")
        for name, target in (("data", "/etc"), ("output", "/"), ("code", "/"), ("tmp", "/")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            t.addfile(link)

    return layer_tar(add)


@pytest.fixture
def hostile_root(settings: Settings, tmp_path: Path) -> tuple[ImageStore, str]:
    try:
        job_user_ids()
    except KeyError:
        pytest.skip("the job user tre-job does not exist (scripts/install-system-deps)")
    from tests.images.conftest import require_tools

    require_tools()
    layer = _hostile_layer()
    config = {"User": "0:0", "Env": ["LD_PRELOAD=/tmp/evil.so", "PATH=/tmp:/bin"], "WorkingDir": "/output"}
    archive = crafted_oci_archive(
        tmp_path / "hostile.tar", [layer], [sha(layer)], "application/vnd.oci.image.layer.v1.tar", config
    )
    store = ImageStore(settings)
    return store, store.import_path(archive).digest


def test_a_hostile_but_accepted_image_gets_nothing_it_asks_for(
    hostile_root: tuple[ImageStore, str], tmp_path: Path
) -> None:
    store, digest = hostile_root
    rootfs, config = store.rootfs(digest), store.config(digest)
    assert not stat.S_IMODE(os.stat(rootfs / "bin" / "suid-busybox").st_mode) & stat.S_ISUID
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "slice.dcm").write_bytes(b"DICM")
    sandbox = Sandbox(tmp_path, LocalExecutor(images_dir=tmp_path / "images"))
    script = textwrap.dedent(
        """
        echo "id=$(id -u):$(id -g)"
        echo "data=$(cat /data/slice.dcm)"
        echo "preload=$LD_PRELOAD path=$PATH"
        echo "suid=$(stat -c %a /bin/suid-busybox)"
        echo x > /bin/planted 2>/dev/null || echo root-read-only
        echo x > /data/planted 2>/dev/null || echo data-read-only
        echo result > /output/result.txt && echo output-ok
        """
    )
    first = sandbox.run(
        "",
        command=["/bin/sh", "-c", script],
        rootfs=rootfs,
        image_config=config,
        datasets=[DatasetMount("ct", host_path=dataset)],
    )
    assert first.result.state == "succeeded", first.log
    for expected in (
        "id=10001:10001",
        "data=DICM",
        "preload=/tmp/evil.so path=/tmp:/bin",  # only inside: the launcher never saw them
        "suid=755",
        "root-read-only",
        "data-read-only",
        "output-ok",
    ):
        assert expected in first.log, (expected, first.log)
    assert (first.spec.output_dir / "result.txt").read_text() == "result\n"
    assert not (rootfs / "bin" / "planted").exists() and not (dataset / "planted").exists()
    # A second job on the same unpacked root sees it as the image left it.
    second = sandbox.run("", command=["/bin/sh", "-c", "ls /bin; ls /"], rootfs=rootfs, image_config=config)
    assert second.result.state == "succeeded", second.log
    assert "planted" not in second.log and "result.txt" not in second.log
