"""A small seccomp deny-list for the local sandbox, assembled as raw classic BPF.

Why hand-assembled: the filter is a flat "deny these syscalls, allow the rest" list, which
is ~45 BPF instructions; building it here avoids a dependency on libseccomp's Python
bindings (not pip-installable for the pyenv interpreter). bubblewrap loads the program
with ``--seccomp FD`` after it has set ``PR_SET_NO_NEW_PRIVS`` and dropped capabilities.

What is denied, and why: syscalls that inspect or tamper with other processes (ptrace,
process_vm_*), kernel keyrings, eBPF, userfaultfd and perf (common kernel exploit
primitives), io_uring (large attack surface, bypasses seccomp on many kernels), module
and kexec loading, mount/namespace manipulation (the sandbox must not rebuild its own
view of the file system or join another namespace), swap/reboot/acct/quotactl/syslog and
raw port I/O. Research code has no legitimate use for any of them. Denied calls fail with
``EPERM``; a syscall made with a foreign ABI (32-bit ``int 0x80`` or x32 on x86_64) kills
the process, because numbers differ per ABI and an allow-by-default filter would
otherwise be trivially bypassed.
"""

from __future__ import annotations

import errno
import platform
import struct

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
# Offsets into struct seccomp_data.
_OFF_NR = 0
_OFF_ARCH = 4
_X32_SYSCALL_BIT = 0x40000000

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# Syscall numbers per architecture (x86_64: asm/unistd_64.h; aarch64: asm-generic/unistd.h).
DENIED_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "bpf": 321,
        "userfaultfd": 323,
        "perf_event_open": 298,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "mount_setattr": 442,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "setns": 308,
        "unshare": 272,
        "open_by_handle_at": 304,
        "name_to_handle_at": 303,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "acct": 163,
        "quotactl": 179,
        "syslog": 103,
        "lookup_dcookie": 212,
        "iopl": 172,
        "ioperm": 173,
    },
    "aarch64": {
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "bpf": 280,
        "userfaultfd": 282,
        "perf_event_open": 241,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "mount_setattr": 442,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "setns": 268,
        "unshare": 97,
        "open_by_handle_at": 265,
        "name_to_handle_at": 264,
        "swapon": 224,
        "swapoff": 225,
        "reboot": 142,
        "acct": 89,
        "quotactl": 60,
        "syslog": 116,
        "lookup_dcookie": 18,
    },
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    """One ``struct sock_filter`` in native byte order (what the kernel reads)."""
    return struct.pack("=HBBI", code, jt, jf, k)


def supported(machine: str | None = None) -> bool:
    """Whether a filter can be built for this CPU architecture."""
    return (machine or platform.machine()) in DENIED_SYSCALLS


def build_filter(machine: str | None = None) -> bytes:
    """The BPF program (a packed ``sock_filter`` array) for ``machine`` (default: this host)."""
    arch = machine or platform.machine()
    if arch not in DENIED_SYSCALLS:
        raise ValueError(f"no seccomp syscall table for architecture {arch!r}")
    numbers = sorted(set(DENIED_SYSCALLS[arch].values()))
    prog: list[bytes] = [
        _insn(_BPF_LD_W_ABS, 0, 0, _OFF_ARCH),
        # Native arch: skip the kill below; anything else: fall through to it.
        _insn(_BPF_JEQ_K, 1, 0, AUDIT_ARCH[arch]),
        _insn(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_BPF_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch == "x86_64":
        # x32 syscalls share the x86_64 audit arch but carry bit 30; refuse them outright.
        prog += [_insn(_BPF_JGE_K, 0, 1, _X32_SYSCALL_BIT), _insn(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS)]
    # Each check jumps forward to the shared "deny" return after the "allow" return.
    for i, nr in enumerate(numbers):
        remaining = len(numbers) - i - 1
        prog.append(_insn(_BPF_JEQ_K, remaining + 1, 0, nr))
    prog.append(_insn(_BPF_RET_K, 0, 0, _RET_ALLOW))
    prog.append(_insn(_BPF_RET_K, 0, 0, _RET_ERRNO | errno.EPERM))
    return b"".join(prog)
