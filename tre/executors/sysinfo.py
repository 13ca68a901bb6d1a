"""``sysinfo(2)`` answered with the job's own figures, by the worker (redteam round 12).

Why: ``sysinfo`` returns the host's load averages, free, shared and buffer RAM and the
number of processes on the machine; measured in a job, all of them moved while other jobs
worked (a covert channel and an activity monitor, like the /proc counters that
`tre.executors.procview` replaces). Refusing the call is no remedy: glibc's
``sysconf(_SC_PHYS_PAGES)`` ignores the failure and returns whatever was on the stack
(3.9e18 pages, measured), which Python's ``os.sysconf`` and anything sizing itself by it
would believe.

How: a seccomp filter whose only rule sends ``sysinfo`` to a user-space listener
(``SECCOMP_RET_USER_NOTIF``). `HELPER` runs in the launcher's chain, as root, just before
it becomes the job user: it installs the filter (inherited by bubblewrap and every process
of the job), hands the listener's descriptor to the worker over a socket, and executes the
rest of the command. The worker's `Responder` thread answers each call by writing a
``struct sysinfo`` of the job's own (its memory limit as the machine's memory, all free, no
swap, no load, one process; the host's uptime, a clock) into the caller's memory through
``/proc/<pid>/mem`` and letting the call return 0. Nothing the job does changes the answer.
A kernel without user notification (before 5.0) fails the launch rather than run the job
with the host's figures.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import platform
import select
import socket
import struct
import threading
import time

from tre.executors.seccomp import AUDIT_ARCH

log = logging.getLogger(__name__)

SYSINFO_NR = {"x86_64": 99, "aarch64": 179}
SECCOMP_NR = {"x86_64": 317, "aarch64": 277}
_RET_USER_NOTIF = 0x7FC00000
_RET_ALLOW = 0x7FFF0000
# linux/seccomp.h ioctls on the listener: RECV(struct seccomp_notif, 80 bytes),
# SEND(struct seccomp_notif_resp, 24 bytes), ID_VALID(__u64).
_NOTIF_RECV = 0xC0502100
_NOTIF_SEND = 0xC0182101
_NOTIF_ID_VALID = 0x40082102
_NOTIF_SIZE = 80
# struct sysinfo on 64-bit Linux: uptime, loads[3], totalram, freeram, sharedram,
# bufferram, totalswap, freeswap, procs, pad, totalhigh, freehigh, mem_unit, then padding.
_SYSINFO = struct.Struct("@l3L6LHH2LI")
_SYSINFO_SIZE = 112

# Run as ``python -I -S -c HELPER <socket fd> <filter hex> <seccomp nr> -- command...``:
# standard library only, nothing from the worker's site-packages or environment.
HELPER = r"""
import ctypes, os, socket, sys
sock_fd, prog_hex, nr = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
command = sys.argv[sys.argv.index("--") + 1:]
prog = bytes.fromhex(prog_hex)
buf = ctypes.create_string_buffer(prog, len(prog))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.stderr.write("tre-launch: cannot set no_new_privs\n"); sys.exit(125)
listener = libc.syscall(nr, 1, 8, ctypes.byref(fprog))  # SET_MODE_FILTER, FLAG_NEW_LISTENER
if listener < 0:
    sys.stderr.write("tre-launch: cannot filter sysinfo\n"); sys.exit(125)
with socket.socket(fileno=sock_fd) as s:
    socket.send_fds(s, [b"L"], [listener])
os.close(listener)
os.execv(command[0], command)
"""


def supported(machine: str | None = None) -> bool:
    """Whether this architecture has the numbers `build_filter` needs."""
    return (machine or platform.machine()) in SYSINFO_NR


def build_filter(machine: str | None = None) -> bytes:
    """A BPF program: the native architecture's ``sysinfo`` to the listener, all else on to
    the other filters (bubblewrap's, `tre.executors.seccomp`, which refuse foreign ABIs)."""
    arch = machine or platform.machine()

    def insn(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    return b"".join(
        [
            insn(0x20, 0, 0, 4),  # load arch
            insn(0x15, 1, 0, AUDIT_ARCH[arch]),
            insn(0x06, 0, 0, _RET_ALLOW),
            insn(0x20, 0, 0, 0),  # load nr
            insn(0x15, 0, 1, SYSINFO_NR[arch]),
            insn(0x06, 0, 0, _RET_USER_NOTIF),
            insn(0x06, 0, 0, _RET_ALLOW),
        ]
    )


def helper_argv(python: str, sock_fd: int, machine: str | None = None) -> list[str]:
    """The words put before the job user's command in the launcher (see `HELPER`)."""
    arch = machine or platform.machine()
    return [
        python,
        "-I",
        "-S",
        "-c",
        HELPER,
        str(sock_fd),
        build_filter(arch).hex(),
        str(SECCOMP_NR[arch]),
        "--",
    ]


def job_sysinfo(memory_bytes: int, uptime_s: float) -> bytes:
    """The ``struct sysinfo`` a job is told: its memory limit, all free; no swap, no load."""
    raw = _SYSINFO.pack(int(uptime_s), 0, 0, 0, memory_bytes, memory_bytes, 0, 0, 0, 0, 1, 0, 0, 0, 1)
    return raw.ljust(_SYSINFO_SIZE, b"\0")


class Responder(threading.Thread):
    """Receives the listener from `HELPER` over ``sock`` and answers the job's ``sysinfo``
    calls until every process of the job is gone or `stop` is called."""

    def __init__(self, sock: socket.socket, memory_bytes: int, boottime_offset: int = 0) -> None:
        """``boottime_offset``: the job's time namespace's (`tre.executors.jobclock`), so the
        uptime answered is the job's clock, not the host's."""
        super().__init__(name="tre-sysinfo", daemon=True)
        self.sock = sock
        self.memory_bytes = memory_bytes
        self.boottime_offset = boottime_offset
        self.answered = 0
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        listener = self._receive()
        if listener is None:
            return
        try:
            self._serve(listener)
        finally:
            os.close(listener)

    def _receive(self) -> int | None:
        self.sock.settimeout(0.2)
        try:
            while not self._stopping.is_set():
                try:
                    _msg, fds, _flags, _addr = socket.recv_fds(self.sock, 1, 1)
                except TimeoutError:
                    continue
                except OSError:
                    return None
                return fds[0] if fds else None  # no descriptor: the launch ended before it
            return None
        finally:
            self.sock.close()

    def _serve(self, listener: int) -> None:
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        while not self._stopping.is_set():
            events = poller.poll(200)
            if not events:
                continue
            if any(ev & (select.POLLHUP | select.POLLERR) for _fd, ev in events):
                return  # every process of the job has exited
            req = bytearray(_NOTIF_SIZE)
            try:
                fcntl.ioctl(listener, _NOTIF_RECV, req)
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.ENOENT):
                    continue  # the caller was interrupted or killed meanwhile
                return
            self._answer(listener, req)

    def _answer(self, listener: int, req: bytearray) -> None:
        notif_id, pid = struct.unpack_from("QI", req, 0)
        (buf_addr,) = struct.unpack_from("Q", req, 32)  # args[0]
        err = 0
        try:
            # The id is still live: ``pid`` names the caller, not a process that took its number.
            fcntl.ioctl(listener, _NOTIF_ID_VALID, struct.pack("Q", notif_id))
            with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
                mem.seek(buf_addr)
                uptime = time.clock_gettime(time.CLOCK_BOOTTIME) + self.boottime_offset
                mem.write(job_sysinfo(self.memory_bytes, max(uptime, 0.0)))
            self.answered += 1
        except (OSError, ValueError, OverflowError):
            err = -errno.EFAULT  # a bad pointer, or the caller is gone
        with contextlib.suppress(OSError):
            fcntl.ioctl(listener, _NOTIF_SEND, bytearray(struct.pack("QqiI", notif_id, 0, err, 0)))
