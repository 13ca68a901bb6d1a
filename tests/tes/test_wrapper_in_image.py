"""The executor wrapper (workdir, env, stdin/stdout/stderr) in a real image root file system:
a busybox image with no host toolchain, run by the local bubblewrap sandbox as the job user,
so the wrapper's only needs are the image's /bin/sh and the sandbox's writable /output."""

from __future__ import annotations

from pathlib import Path

from tests.sandbox.conftest import Sandbox
from tests.sandbox.test_sandbox_image import image_sandbox  # noqa: F401 - the fixture
from tests.tes.conftest import IMAGE, needs_bwrap
from tre.executors.base import ImageConfig
from tre.tes.models import TesExecutor
from tre.tes.submission import executor_command

pytestmark = needs_bwrap


def test_wrapper_runs_in_a_busybox_image(image_sandbox: tuple[Sandbox, Path], tmp_path: Path) -> None:  # noqa: F811
    sandbox, rootfs = image_sandbox
    code = tmp_path / "code"
    (code / "sub").mkdir(parents=True)
    (code / "sub" / "in.txt").write_text("read from stdin\n")
    executor = TesExecutor(
        image=IMAGE,
        command=["sh", "-c", 'echo "$MSG in $(pwd) with $1"; cat; echo oops >&2', "step", "a b;$(id)"],
        workdir="/code/sub",
        env={"MSG": "it's $HOME"},
        stdin="/code/sub/in.txt",
        stdout="/output/stdout.txt",
        stderr="/output/stderr.txt",
    )
    run = sandbox.run(
        "",
        command=executor_command(executor),
        rootfs=rootfs,
        image_config=ImageConfig(env={"PATH": "/bin"}),
        code_dir=code,
    )
    assert run.result.state == "succeeded", run.log
    out = run.spec.output_dir
    assert (out / "stdout.txt").read_text() == "it's $HOME in /code/sub with a b;$(id)\nread from stdin\n"
    assert (out / "stderr.txt").read_text() == "oops\n"

    # A working directory that does not exist ends the job with the wrapper's exit code.
    missing = sandbox.run(
        "",
        command=executor_command(executor.model_copy(update={"workdir": "/nowhere"})),
        rootfs=rootfs,
        image_config=ImageConfig(env={"PATH": "/bin"}),
        code_dir=code,
    )
    assert missing.result.state == "failed" and missing.result.exit_code == 126
