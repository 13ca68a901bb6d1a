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
``EPERM``. ``personality`` is allowed only for the harmless values Docker's default profile
allows (``ADDR_NO_RANDOMIZE`` and ``READ_IMPLIES_EXEC`` would switch off ASLR and NX).

Two argument checks close channels the namespaces leave open: ``socket``/``socketpair`` work
only for ``AF_UNIX`` (``AF_VSOCK`` reaches the hypervisor and is not isolated by a network
namespace; ``AF_INET``, ``AF_NETLINK``, ``AF_PACKET`` ... have nothing to reach anyway) and
fail with ``EAFNOSUPPORT``; and no file may be created or chmod-ed with the setuid or setgid
bit (``EPERM``), so nothing the job writes ever carries them, not even while it runs.
Otherwise a syscall made with a foreign ABI (32-bit ``int 0x80`` or x32 on x86_64) kills
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


# Syscalls allowed only with harmless arguments: (name, argument index, rule). "family" allows
# the socket only for AF_UNIX; "mode" refuses a mode with the setuid or setgid bit; "persona"
# allows personality() only for the values in PERSONALITY_ALLOWED.
ARG_RULES: dict[str, dict[str, tuple[int, int, str]]] = {
    "x86_64": {
        "socket": (41, 0, "family"),
        "socketpair": (53, 0, "family"),
        "open": (2, 2, "mode"),
        "creat": (85, 1, "mode"),
        "openat": (257, 3, "mode"),
        "mknod": (133, 1, "mode"),
        "mknodat": (259, 2, "mode"),
        "chmod": (90, 1, "mode"),
        "fchmod": (91, 1, "mode"),
        "fchmodat": (268, 2, "mode"),
        "fchmodat2": (452, 2, "mode"),
        "personality": (135, 0, "persona"),
    },
    "aarch64": {
        "socket": (198, 0, "family"),
        "socketpair": (199, 0, "family"),
        "openat": (56, 3, "mode"),
        "mknodat": (33, 2, "mode"),
        "fchmod": (52, 1, "mode"),
        "fchmodat": (53, 2, "mode"),
        "fchmodat2": (452, 2, "mode"),
        "personality": (92, 0, "persona"),
    },
}
# openat2 passes its mode inside a struct that seccomp cannot read: answer ENOSYS so that C
# libraries fall back to openat, whose mode is checked.
ENOSYS_SYSCALLS: dict[str, dict[str, int]] = {"x86_64": {"openat2": 437}, "aarch64": {"openat2": 437}}
AF_UNIX = 1
# personality() values a job may set: PER_LINUX, PER_LINUX32, UNAME26 (and both), and the
# query 0xffffffff (the list Docker's default profile allows). Everything else is refused,
# above all ADDR_NO_RANDOMIZE and READ_IMPLIES_EXEC, which switch off ASLR and NX for the
# job's processes: mitigations that make a kernel or setuid exploit harder.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
_SPECIAL_MODE_BITS = 0o6000  # S_ISUID | S_ISGID
_BPF_ALU_AND_K = 0x54


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    """One ``struct sock_filter`` in native byte order (what the kernel reads)."""
    return struct.pack("=HBBI", code, jt, jf, k)


def supported(machine: str | None = None) -> bool:
    """Whether a filter can be built for this CPU architecture."""
    return (machine or platform.machine()) in DENIED_SYSCALLS


def _arg_offset(index: int) -> int:
    """Offset of the low 32 bits of ``args[index]`` in ``struct seccomp_data`` (little endian)."""
    return 16 + 8 * index


def build_filter(machine: str | None = None) -> bytes:
    """The BPF program (a packed ``sock_filter`` array) for ``machine`` (default: this host).

    Layout: architecture check, syscall number load, one ``JEQ`` per denied syscall (to the
    shared EPERM return), one per argument-checked syscall (to its own check block), then
    ALLOW, the check blocks (each ending in ALLOW), ENOSYS, EAFNOSUPPORT and EPERM returns.
    Only the low 32 bits of an argument are inspected: socket families and file modes are
    ``int``s, which the kernel truncates the same way.
    """
    arch = machine or platform.machine()
    if arch not in DENIED_SYSCALLS:
        raise ValueError(f"no seccomp syscall table for architecture {arch!r}")
    denied = sorted(set(DENIED_SYSCALLS[arch].values()))
    enosys = sorted(set(ENOSYS_SYSCALLS[arch].values()))
    rules = sorted(ARG_RULES[arch].values())
    head: list[bytes] = [
        _insn(_BPF_LD_W_ABS, 0, 0, _OFF_ARCH),
        # Native arch: skip the kill below; anything else: fall through to it.
        _insn(_BPF_JEQ_K, 1, 0, AUDIT_ARCH[arch]),
        _insn(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_BPF_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch == "x86_64":
        # x32 syscalls share the x86_64 audit arch but carry bit 30; refuse them outright.
        head += [_insn(_BPF_JGE_K, 0, 1, _X32_SYSCALL_BIT), _insn(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS)]
    # Positions are counted from the first dispatch instruction; each block has a fixed size.
    n_dispatch = len(denied) + len(enosys) + len(rules)
    allow_at = n_dispatch
    block_len = {"family": 3, "mode": 4, "persona": 2 + len(PERSONALITY_ALLOWED)}
    block_at: list[int] = []
    pos = allow_at + 1
    for _nr, _idx, kind in rules:
        block_at.append(pos)
        pos += block_len[kind]
    enosys_at, eafnosupport_at, eperm_at = pos, pos + 1, pos + 2

    def jump(here: int, target: int) -> int:
        offset = target - here - 1
        if not 0 <= offset <= 255:
            raise ValueError("seccomp program too long for a classic BPF jump")
        return offset

    body: list[bytes] = []
    for nr in denied:
        body.append(_insn(_BPF_JEQ_K, jump(len(body), eperm_at), 0, nr))
    for nr in enosys:
        body.append(_insn(_BPF_JEQ_K, jump(len(body), enosys_at), 0, nr))
    for i, (nr, _idx, _kind) in enumerate(rules):
        body.append(_insn(_BPF_JEQ_K, jump(len(body), block_at[i]), 0, nr))
    body.append(_insn(_BPF_RET_K, 0, 0, _RET_ALLOW))
    for _nr, idx, kind in rules:
        # BPF jumps only go forward, so each block ends in its own ALLOW.
        body.append(_insn(_BPF_LD_W_ABS, 0, 0, _arg_offset(idx)))
        if kind == "family":
            # AF_UNIX: on to ALLOW; anything else: EAFNOSUPPORT.
            body.append(_insn(_BPF_JEQ_K, 0, jump(len(body), eafnosupport_at), AF_UNIX))
        elif kind == "persona":
            # Each allowed value jumps to the block's ALLOW; the last miss goes to EPERM.
            for i, value in enumerate(PERSONALITY_ALLOWED):
                to_allow = len(PERSONALITY_ALLOWED) - 1 - i
                miss = jump(len(body), eperm_at) if i == len(PERSONALITY_ALLOWED) - 1 else 0
                body.append(_insn(_BPF_JEQ_K, to_allow, miss, value))
        else:
            body.append(_insn(_BPF_ALU_AND_K, 0, 0, _SPECIAL_MODE_BITS))
            body.append(_insn(_BPF_JEQ_K, 0, jump(len(body), eperm_at), 0))
        body.append(_insn(_BPF_RET_K, 0, 0, _RET_ALLOW))
    body.append(_insn(_BPF_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS))
    body.append(_insn(_BPF_RET_K, 0, 0, _RET_ERRNO | errno.EAFNOSUPPORT))
    body.append(_insn(_BPF_RET_K, 0, 0, _RET_ERRNO | errno.EPERM))
    return b"".join(head + body)
