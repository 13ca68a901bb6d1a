"""`tre submit --input-job` as a researcher runs it, against a live API and worker with the real
bubblewrap sandbox: job B reads job A's outputs at /inputs/<A> and cannot change them; the
refusals are one line on stderr."""

from __future__ import annotations

import os
import re

import pytest

from tests.core.test_cli import _one_line_error, _tre, live  # noqa: F401 - `live` is a fixture
from tests.worlds import IMAGE, WorldFactory
from tre.store.db import session_scope
from tre.store.models import Job

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap not installed")

WRITE = "open('/output/vol.txt', 'w').write('volume-of-A')"
# Reads the input through TRE_INPUTS, then tries every way of changing it; prints the errno.
READ_AND_TAMPER = """
import errno, os
(root,) = os.environ["TRE_INPUTS"].split(":")
print("read", open(os.path.join(root, "vol.txt")).read(), "from", root)
def attempt(name, fn):
    try:
        fn()
        print(name, "ALLOWED")
    except OSError as exc:
        print(name, errno.errorcode[exc.errno])
attempt("write", lambda: open(os.path.join(root, "vol.txt"), "a").write("x"))
attempt("rename", lambda: os.rename(os.path.join(root, "vol.txt"), os.path.join(root, "moved.txt")))
attempt("delete", lambda: os.unlink(os.path.join(root, "vol.txt")))
attempt("chmod", lambda: os.chmod(os.path.join(root, "vol.txt"), 0o777))
attempt("create", lambda: open(os.path.join(root, "new.txt"), "w"))
open("/output/n.txt", "w").write("ok")
"""
JOB_ID = re.compile(r"submitted job ([0-9a-f]{32})")


def _submit(env, *args: str):  # type: ignore[no-untyped-def]
    return _tre(env, "submit", "-p", "p1", "--image", IMAGE, *args)


def test_a_job_reads_an_earlier_jobs_outputs_read_only(live, settings):  # noqa: F811
    first = _submit(live, "-d", "ct1", "--wait", "--", "python3", "-c", WRITE)
    assert first.returncode == 0, first.stderr
    a = JOB_ID.search(first.stdout)
    assert a, first.stdout
    a_id = a.group(1)
    second = _submit(live, "--input-job", a_id[:8], "--wait", "--", "python3", "-c", READ_AND_TAMPER)
    assert second.returncode == 0, (second.stdout, second.stderr)
    out = second.stdout
    assert f"read volume-of-A from /inputs/{a_id}" in out, out
    for name in ("write", "rename", "delete", "chmod", "create"):
        assert f"{name} EROFS" in out, out
    assert (settings.jobs_dir / a_id / "output" / "vol.txt").read_text() == "volume-of-A"
    assert sorted(p.name for p in (settings.jobs_dir / a_id / "output").iterdir()) == ["vol.txt"]
    b_id = JOB_ID.search(out).group(1)  # type: ignore[union-attr]
    shown = _tre(live, "job", "show", b_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"inputs: {a_id}\b", shown.stdout) and "lineage: ct1" in shown.stdout, shown.stdout


def test_input_job_refusals_are_one_line(live, settings, engine):  # noqa: F811
    """Prefixes are the CLI's (unknown, ambiguous); the server's refusals (another project's
    job here; unfinished ones in test_job_inputs.py) come back as one line too."""
    with session_scope(engine) as s:
        make = WorldFactory(s)
        theirs = make.finished_job(settings, "p2", "bob", [], {"x.txt": b"bob"})
        for suffix in "12":  # two jobs whose ids share the prefix abcdef
            s.add(
                Job(
                    id="abcdef" + suffix * 26,
                    project_id="p1",
                    submitted_by="alice",
                    image=IMAGE,
                    command=["x"],
                    dataset_ids=["ct1"],
                    state="succeeded",
                )
            )
    cmd = ("--", "python3", "-c", "pass")
    _one_line_error(_submit(live, "--input-job", "0000dead", *cmd), "no job '0000dead'")
    _one_line_error(_submit(live, "--input-job", "abcdef", *cmd), "'abcdef' matches 2 jobs")
    _one_line_error(_submit(live, "--input-job", theirs, *cmd), f"no job '{theirs}' in project 'p1'")
