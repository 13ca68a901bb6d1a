"""A cohort job's manifest names only outputs already on the disk (issue 13, tenth round).

The job runs as the sandbox runs it (``python -m tre.kernels.job``), traced by strace: the
order of its real system calls is the check, not a mock of ``os``. For each output the manifest
records, its data was ``fdatasync``'d and its rename into place made durable (``fsync`` of
``series/``) before any manifest was written that holds its SHA-256; the manifest itself is
written to a temporary file, synced, renamed and its folder synced. A crash of the machine at
any point then leaves a manifest that names whole files only, which is what resuming trusts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.kernels.synth import chest_phantom, write_series

REPO = Path(__file__).resolve().parents[2]
STRACE = shutil.which("strace")


def _can_trace() -> bool:
    """strace is installed and may trace here (a container may forbid ptrace)."""
    if STRACE is None:
        return False
    probe = subprocess.run([STRACE, "-qq", "-o", os.devnull, "true"], capture_output=True, timeout=60)
    return probe.returncode == 0


_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<rest>.*)$")
_RESUMED = re.compile(r"^<\.\.\. (?P<call>\w+) resumed>")
_CALL = re.compile(r"^(?P<call>\w+)\((?P<args>.*)")
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class Trace:
    """The traced calls, in the order strace saw them: where each started and returned."""

    syncs: dict[str, list[int]] = field(default_factory=dict)  # path -> indexes it returned at
    renames: dict[str, tuple[str, int]] = field(default_factory=dict)  # destination -> (source, returned)
    writes: list[tuple[int, str, str]] = field(default_factory=list)  # (started, path, text)


def parse(log: str) -> Trace:
    """strace ``-f -y`` output: a call split by another thread (``<unfinished ...>`` then
    ``<... call resumed>``) counts as returned where it resumed."""
    trace = Trace()
    pending: dict[tuple[str, str], tuple[str, str]] = {}  # (pid, call) -> its arguments so far
    for index, line in enumerate(log.splitlines()):
        m = _LINE.match(line)
        if not m:
            continue
        pid, rest = m["pid"], m["rest"]
        resumed = _RESUMED.match(rest)
        if resumed:
            call = resumed["call"]
            args = pending.pop((pid, call), (call, ""))[1] + rest[resumed.end() :]
        else:
            c = _CALL.match(rest)
            if not c:
                continue
            call, args = c["call"], c["args"]
            if rest.endswith("<unfinished ...>"):
                pending[(pid, call)] = (call, args)
                if call == "write":  # a write's start is what orders it after the syncs
                    _record_write(trace, index, args)
                continue
        if " = -1 " in args:
            continue  # a failed call proves nothing
        if call in ("fsync", "fdatasync"):
            fd = _FD_PATH.match(args)
            if fd:
                trace.syncs.setdefault(fd["path"], []).append(index)
        elif call in ("rename", "renameat", "renameat2"):
            paths = _QUOTED.findall(args)
            if len(paths) >= 2:
                trace.renames[paths[1]] = (paths[0], index)
        elif call == "write" and not resumed:
            _record_write(trace, index, args)
    return trace


def _record_write(trace: Trace, index: int, args: str) -> None:
    fd = _FD_PATH.match(args)
    text = _QUOTED.search(args)
    if fd and text:
        trace.writes.append((index, fd["path"], text.group(1)))


def synced_before(trace: Trace, path: str, before: int) -> bool:
    return any(i < before for i in trace.syncs.get(path, []))


def synced_between(trace: Trace, path: str, after: int, before: int) -> bool:
    return any(after < i < before for i in trace.syncs.get(path, []))


@pytest.mark.skipif(not _can_trace(), reason="strace is not installed or may not trace here")
def test_manifest_records_an_output_only_after_it_is_on_the_disk(tmp_path: Path) -> None:
    root, out = tmp_path / "in", (tmp_path / "out").resolve()
    for i in range(3):
        raw = chest_phantom((4 + i, 24, 20), seed=i)
        write_series(root / f"s{i}", raw, spacing_zyx=(2.0, 0.9, 0.9), series_uid=f"1.2.826.0.7.{i}")
    log = tmp_path / "strace.log"
    job = [sys.executable, "-m", "tre.kernels.job", "--input", str(root), "--output", str(out)]
    job += ["--spacing", "1", "1", "1.5", "--window", "-1000", "400", "--workers", "2"]
    cmd = [str(STRACE), "-f", "-qq", "-y", "-s", "1000000", "-o", str(log)]
    cmd += ["-e", "trace=fsync,fdatasync,rename,renameat,renameat2,write", *job]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trace = parse(log.read_text(errors="replace"))
    series_dir, manifest_path = str(out / "series"), str(out / "manifest.json")

    manifest = json.loads(Path(manifest_path).read_text())
    outputs = [o for entry in manifest["series"].values() for o in entry["outputs"]]
    assert len(outputs) == 6  # a volume and a sidecar for each of the three series
    manifest_writes = [(i, text) for i, path, text in trace.writes if "/.manifest." in path]
    assert manifest_writes, "no manifest write was traced"
    for output in outputs:
        final = str(out / output["path"])
        assert final in trace.renames, f"{output['path']} was not renamed into place"
        tmp, renamed = trace.renames[final]
        recorded = [i for i, text in manifest_writes if output["sha256"] in text]
        assert recorded, f"no manifest write holds {output['path']}"
        # Its data synced (under its temporary name, or its final one after the rename)...
        assert synced_before(trace, tmp, renamed) or synced_between(trace, final, renamed, recorded[0]), (
            f"the manifest recorded {output['path']} before its data was synced"
        )
        # ... and its rename made durable, before the first manifest that names it.
        assert synced_between(trace, series_dir, renamed, recorded[0]), (
            f"the manifest recorded {output['path']} before its rename was made durable"
        )

    # The manifest itself: temporary file synced, renamed, folder synced after the rename.
    tmp, renamed = trace.renames[manifest_path]
    assert "/.manifest." in tmp and synced_before(trace, tmp, renamed)
    assert synced_between(trace, str(out), renamed, 1 << 62)
