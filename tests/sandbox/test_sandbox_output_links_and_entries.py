"""A real job's /output with many entries, links to /data and outside, and a hard link.

What the platform does after the job: the copy out of the job's file system stops at the
entry limit with the fixed reason, links are copied as links and never followed, a hard link
into /data cannot be made (/output is a file system of its own), and the worker records
regular files only, none of them outside /output. The entry limit (100,000: a job that made
1,000,000 empty files stopped at 99,922 on its inodes, `docs/api.md`) is lowered here to 500
so that the mechanism is tested in seconds.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.sandbox.conftest import Sandbox
from tre.executors import fstree
from tre.executors.base import DatasetMount
from tre.jobs.outputs import scan_output_tree

JOB = textwrap.dedent(
    """
    import errno, json, os
    result = {}
    try:
        os.link('/data/CT_small.dcm', '/output/hard-to-data.dcm')
        result['hard_to_data'] = 'made'
    except OSError as e:
        result['hard_to_data'] = errno.errorcode[e.errno]
    os.symlink('/data/CT_small.dcm', '/output/link-to-data.dcm')
    os.symlink('/etc/passwd', '/output/link-to-passwd')
    os.symlink('..', '/output/link-up')
    open('/output/manifest.json', 'w').write('{}')
    os.link('/output/manifest.json', '/output/manifest-again.json')
    made = 0
    try:
        for i in range(1000):
            d = f'/output/series/{i // 100:02d}'
            os.makedirs(d, exist_ok=True)
            open(f'{d}/{i:04d}.json', 'w').close()
            made += 1
    except OSError as e:
        result['stopped'] = errno.errorcode[e.errno]
    result['made'] = made
    print(json.dumps(result))
    """
)


def test_links_and_too_many_entries_end_the_job_with_a_fixed_reason(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "dataset"
    data.mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), data / "CT_small.dcm")
    data.chmod(0o755)
    (data / "CT_small.dcm").chmod(0o644)
    monkeypatch.setattr(fstree, "MAX_ENTRIES", 500)
    run = sandbox.run(JOB, datasets=[DatasetMount("ds1", host_path=data)], output_limit_mb=8, time_limit_s=60)
    (said,) = run.json_lines()
    assert said["hard_to_data"] == "EXDEV" and said["made"] == 1000, said
    assert run.result.state == "failed", run.log
    assert run.result.reason == "output holds more than 500 files and folders"
    out = run.spec.output_dir
    # Links came out as links, never followed; what was copied stops at the limit.
    assert (out / "link-to-data.dcm").is_symlink() and (out / "link-to-passwd").is_symlink()
    assert fstree.usage(out).entries <= 500
    scan = scan_output_tree(out, max_files=100_000)
    paths = [p for p, _, _ in scan.files]
    assert "manifest.json" in paths and "manifest-again.json" in paths
    assert not any(p.startswith("link") for p in paths)
    assert all((out / p).is_file() and not (out / p).is_symlink() for p in paths)
    assert all((out / p).resolve().is_relative_to(out.resolve()) for p in paths)
    # Nothing of the dataset was recorded: no output has its bytes.
    dicom = (data / "CT_small.dcm").read_bytes()
    assert all((out / p).read_bytes() != dicom for p in paths)


def test_a_sparse_file_claiming_a_tebibyte_is_not_copied_or_read(sandbox: Sandbox) -> None:
    """Holes cost the job's file system nothing; the copy out judges the apparent size first
    (reading 1 TiB of holes would take the worker hours), keeps the other files, and the job
    ends with the quota reason."""
    code = (
        "f = open('/output/tera.bin', 'wb'); f.seek(2**40); f.write(b'x'); f.close()\n"
        "open('/output/ok.txt', 'w').write('ok')"
    )
    run = sandbox.run(code, output_limit_mb=4, time_limit_s=60)
    assert run.result.state == "failed" and run.result.reason == "output quota of 4 MiB exceeded"
    assert sorted(p.name for p in run.spec.output_dir.iterdir()) == ["ok.txt"]
    assert [p for p, _, _ in scan_output_tree(run.spec.output_dir).files] == ["ok.txt"]
