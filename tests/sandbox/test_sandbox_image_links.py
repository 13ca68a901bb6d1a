"""An image's symbolic links are the image's: the worker never follows them on the host.

Redteam round 10: the worker checked the image's ``WorkingDir`` with ``Path.is_dir()`` on
the host, as root. An image holding ``probe -> /some/host/folder`` with ``WorkingDir:
/probe`` turned that check into an oracle on the host's file system: a host folder that
existed made the worker ``--chdir /probe``, which fails inside the sandbox (the link's target
is not there), so the job ended ``sandbox setup failed``; a missing one ran the job in /tmp.
One bit per job about any path root can see (a home folder, another project's job folder).
The working folder is now resolved inside the image, as the sandbox will resolve it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tests.sandbox.test_sandbox_image import image_sandbox  # noqa: F401 - fixture
from tre.executors.base import ImageConfig
from tre.executors.bwrap import image_workdir

PWD = ["sh", "-c", 'echo "pwd=$(pwd)"']


def _run_in(sandbox: Sandbox, rootfs: Path, working_dir: str) -> tuple[str, str]:
    config = ImageConfig(env={"PATH": "/bin"}, entrypoint=PWD, working_dir=working_dir)
    run = sandbox.run("", command=[], rootfs=rootfs, image_config=config)
    return run.result.state, run.log


def test_workdir_through_a_link_to_the_host_is_no_oracle(
    image_sandbox: tuple[Sandbox, Path],  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    sandbox, rootfs = image_sandbox
    present = tmp_path / "host-secret-folder"
    present.mkdir()
    (rootfs / "probe-present").symlink_to(present)
    (rootfs / "probe-missing").symlink_to(tmp_path / "no-such-folder")
    (rootfs / "srv" / "probe-nested").symlink_to(present)
    outcomes = {
        name: _run_in(sandbox, rootfs, name)
        for name in ("/probe-present", "/probe-missing", "/srv/probe-nested")
    }
    for name, (state, log) in outcomes.items():
        # Both links name folders the sandbox does not hold: the same outcome whatever the host has.
        assert state == "succeeded", (name, log)
        assert "pwd=/tmp" in log, (name, log)


def test_workdir_through_links_inside_the_image_is_honoured(
    image_sandbox: tuple[Sandbox, Path],  # noqa: F811 - fixture
) -> None:
    sandbox, rootfs = image_sandbox
    (rootfs / "app").symlink_to("/srv/app")  # absolute, resolved in the image
    (rootfs / "srv" / "rel").symlink_to("app")  # relative
    for name in ("/app", "/srv/rel"):
        state, log = _run_in(sandbox, rootfs, name)
        assert state == "succeeded", log
        assert f"pwd={name}" in log, log


def test_workdir_resolution_stays_in_the_image(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "srv" / "app").mkdir(parents=True)
    (root / "tmp").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    links = {
        "up": "../../../../../..",  # resolves to the image's root, never above it
        "abs": str(outside),
        "loop": "loop",
        "via-tmp": "/tmp/../srv/app",  # passes a folder the sandbox replaces
        "deep": "srv/app",
        "file-link": "/srv/app/f",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    (root / "srv" / "app" / "f").write_text("x")

    def wd(path: str) -> str:
        return image_workdir(ImageConfig(working_dir=path), False, root)

    assert wd("/up") == "/up"  # the image's root, a folder
    assert wd("/up/srv/app") == "/up/srv/app"
    assert wd("/abs") == "/tmp"
    assert wd("/loop") == "/tmp"
    assert wd("/via-tmp") == "/tmp"
    assert wd("/deep") == "/deep"
    assert wd("/file-link") == "/tmp"
    assert wd("/srv/app/f") == "/tmp"


@pytest.mark.parametrize("target", ["/", "/srv", "/srv/app"])
def test_an_absolute_link_outside_the_tree_is_read_in_the_image(tmp_path: Path, target: str) -> None:
    root = tmp_path / "rootfs"
    (root / "srv" / "app").mkdir(parents=True)
    (root / "l").symlink_to(target)
    assert image_workdir(ImageConfig(working_dir="/l"), False, root) == "/l"
