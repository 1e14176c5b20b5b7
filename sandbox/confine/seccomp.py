"""A small seccomp filter for the ``landlock`` level: what Landlock does not cover.

Why: Landlock (ABI 7) restricts TCP bind/connect but not UDP, raw or netlink sockets, and
it does not stop io_uring (whose socket operations skip this filter's socket() check) or
other kernel attack surface no Python code needs. So, after Landlock: socket() of any
family but AF_UNIX fails with EACCES (unless the sandbox has the network), and ptrace,
process_vm_*, io_uring, bpf, perf_event_open, userfaultfd, the keyring and file handles
(open_by_handle_at: it opens by inode, not by path) fail with EPERM.
A syscall from another ABI (i386 or x32 on x86_64) kills the process, so no number table
can be sidestepped. ``socketpair`` stays allowed: multiprocessing pipes need it.

Why hand-written BPF rather than a library: libseccomp's own bindings are not on PyPI,
``pyseccomp`` (a ctypes wrapper over libseccomp.so) saw its last release in 2021, and the
filter is twenty instructions. Only x86_64 and aarch64 are known here; elsewhere `install`
returns False and the level runs on Landlock alone (logged by the worker's caller).
"""

from __future__ import annotations

import ctypes
import errno
import platform

_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_RET_KILL_PROCESS, _RET_ALLOW, _RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16  # struct seccomp_data, little-endian low word
_AF_UNIX = 1
_X32_BIT = 0x40000000

# (audit arch, socket, {denied syscall: number}) per machine.
_ARCHES: dict[str, tuple[int, int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        41,
        {
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            "name_to_handle_at": 303,
            "open_by_handle_at": 304,
        },
    ),
    "aarch64": (
        0xC00000B7,
        198,
        {
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            "name_to_handle_at": 264,
            "open_by_handle_at": 265,
        },
    ),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def program(machine: str, network: bool) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) tuples; jumps are relative, as BPF wants."""
    arch, socket_nr, denied = _ARCHES[machine]
    deny = _RET_ERRNO | errno.EPERM
    # Written with labels, then resolved: ("jeq", k, "label") jumps there when equal.
    code: list[tuple] = [("ld", _OFF_ARCH), ("jne", arch, "kill"), ("ld", _OFF_NR)]
    if machine == "x86_64":
        code.append(("jge", _X32_BIT, "kill"))
    code += [("jeq", number, "deny") for number in denied.values()]
    if not network:
        code.append(("jeq", socket_nr, "socket"))
    code += [
        ("ret", _RET_ALLOW),
        ("label", "socket"),
        ("ld", _OFF_ARG0),
        ("jeq", _AF_UNIX, "allow"),
        ("ret", _RET_ERRNO | errno.EACCES),
        ("label", "allow"),
        ("ret", _RET_ALLOW),
        ("label", "deny"),
        ("ret", deny),
        ("label", "kill"),
        ("ret", _RET_KILL_PROCESS),
    ]
    labels: dict[str, int] = {}
    for op in code:
        if op[0] == "label":
            labels[op[1]] = sum(1 for o in code[: code.index(op)] if o[0] != "label")
    out: list[tuple[int, int, int, int]] = []
    for op in (o for o in code if o[0] != "label"):
        here = len(out) + 1  # jumps count from the next instruction
        if op[0] == "ld":
            out.append((_LD_W_ABS, 0, 0, op[1]))
        elif op[0] == "ret":
            out.append((_RET_K, 0, 0, op[1]))
        elif op[0] == "jne":
            out.append((_JEQ_K, 0, labels[op[2]] - here, op[1]))
        else:
            out.append((_JEQ_K if op[0] == "jeq" else _JGE_K, labels[op[2]] - here, 0, op[1]))
    return out


def install(network: bool) -> bool:
    """Load the filter into this process (inherited by children); False if the machine is
    not one this module knows. Needs no_new_privs (set by `landlock.restrict`)."""
    machine = platform.machine()
    if machine not in _ARCHES:
        return False
    instructions = program(machine, network)
    filters = (_SockFilter * len(instructions))(*(_SockFilter(*op) for op in instructions))
    prog = _SockFprog(len(instructions), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter refused: {errno.errorcode.get(err, err)}")
    return True
