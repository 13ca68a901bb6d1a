"""The pieces of `tre.executors.sysinfo`: the filter, the answer, the helper's words.

The sandbox tests (`tests/sandbox/test_sandbox_proc_counters.py`) show a real job's
``sysinfo`` answered; this one also runs the helper and the responder outside any sandbox,
so the hand-over of the listener and the answer are checked on their own.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tre.executors import sysinfo

pytestmark = pytest.mark.skipif(not sysinfo.supported(), reason="no syscall numbers for this CPU")


def test_the_answer_is_a_machine_of_the_jobs_size() -> None:
    raw = sysinfo.job_sysinfo(640 << 20, 1234.9)
    assert len(raw) == 112
    fields = sysinfo._SYSINFO.unpack_from(raw)
    uptime, loads, ram, procs, unit = fields[0], fields[1:4], fields[4:10], fields[10], fields[14]
    assert uptime == 1234 and loads == (0, 0, 0) and procs == 1 and unit == 1
    assert ram == (640 << 20, 640 << 20, 0, 0, 0, 0)  # total, free, shared, buffer, swap total, free


def test_the_filter_sends_only_sysinfo_to_the_listener() -> None:
    prog = sysinfo.build_filter("x86_64")
    insns = [prog[i : i + 8] for i in range(0, len(prog), 8)]
    ks = [int.from_bytes(i[4:], "little") for i in insns]
    assert 99 in ks and 0x7FC00000 in ks  # sysinfo's number, SECCOMP_RET_USER_NOTIF
    assert ks.count(0x7FC00000) == 1
    assert sysinfo.build_filter("aarch64") != prog


def test_a_process_behind_the_helper_gets_the_workers_answer() -> None:
    """The helper installs the filter, hands the listener over and runs the command; the
    command's ``sysinfo`` (through glibc's ``sysconf``) is the responder's."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    responder = sysinfo.Responder(ours, 300 << 20)
    probe = textwrap.dedent(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        print(phys, libc.sysinfo(ctypes.c_void_p(16)), ctypes.get_errno())
        """
    )
    argv = [*sysinfo.helper_argv(sys.executable, theirs.fileno()), sys.executable, "-c", probe]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, pass_fds=(theirs.fileno(),))
    theirs.close()
    responder.start()
    out, _ = proc.communicate(timeout=30)
    responder.join(timeout=10)
    assert proc.returncode == 0
    assert out.split() == [str(300 << 20), "-1", "14"]
    assert responder.answered >= 1 and not responder.is_alive()  # the bad pointer is not
    # The worker itself is not filtered.
    assert ctypes.CDLL(None).sysinfo(ctypes.create_string_buffer(128)) == 0
    assert os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") != 300 << 20
