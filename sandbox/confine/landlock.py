"""Landlock from inside the worker: a kernel-enforced allow-list that needs no privileges.

Why our own ctypes binding: the PyPI ``landlock`` package (1.0.0.dev5, alpha) covers file
system rights only, not the TCP rules (ABI 4) or the signal / abstract-socket scoping
(ABI 6) this level promises; and the worker may run in a separate interpreter environment,
where stdlib-only code in this package needs nothing installed.

Why ABI 6 is the floor: the worker runs as the server's user at this level (no uid of its
own unless the server is root), so without signal scoping the code could kill the server,
and without TCP rules it could reach any listener. Older kernels fall back to the next level.

Once `restrict` returns, this process and every child: may read (and execute) only the
``read`` paths, may read and write only beneath the ``write`` paths, may not bind or
connect TCP sockets (unless ``network``), may not signal or connect to abstract unix
sockets of processes outside the sandbox, and may not ptrace them (Landlock's own rule).
That rule did not stop reading ``/proc/<server pid>/environ`` on Linux 6.18, so the rules
leave /proc out altogether. It cannot be undone. `seccomp.install` then closes what
Landlock does not cover (UDP, other socket families, io_uring).

Stdlib only: imported by the worker, and by the server only to read the ABI version.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
from typing import Any

MIN_ABI = 6

# Generic syscall numbers, the same on every architecture Landlock supports.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# File system rights (uapi/linux/landlock.h), with the ABI that introduced them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_FS_ALL_LATEST = (1 << 16) - 1
#: Rights that make sense on a file (a rule on a file with directory rights is EINVAL).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
_READ = EXECUTE | READ_FILE | READ_DIR
_WRITE = (
    _READ
    | WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_SYM
    | REFER
    | TRUNCATE
)
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6


class LandlockError(OSError):
    """Landlock is missing, too old, or refused a rule."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi_version() -> int:
    """The kernel's Landlock ABI (0: none, disabled, or the syscall is filtered out)."""
    if platform.system() != "Linux":
        return 0
    libc = _libc()
    version = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def _fs_rights(abi: int) -> int:
    return _FS_BY_ABI.get(abi, _FS_ALL_LATEST)


def restrict(read: list[str], write: list[str], network: bool) -> int:
    """Confine this process and its future children for good; returns the ABI used."""
    abi = abi_version()
    if abi < MIN_ABI:
        raise LandlockError(
            errno.ENOSYS,
            f"Landlock ABI {abi} here; at least {MIN_ABI} needed (Linux 6.12+, with landlock in the lsm= boot list)",
        )
    libc = _libc()
    handled = _fs_rights(abi)
    attr = _RulesetAttr(
        handled_access_fs=handled,
        handled_access_net=0 if network else NET_BIND_TCP | NET_CONNECT_TCP,
        scoped=SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL,
    )
    ruleset = libc.syscall(
        _SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        raise LandlockError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for paths, rights in ((read, _READ), (write, _WRITE)):
            for path in paths:
                _add_path(libc, int(ruleset), path, rights & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LandlockError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise LandlockError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


def _add_path(libc: Any, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # optional paths (/etc/timezone) may be missing; nothing to allow then
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        if (
            libc.syscall(
                _SYS_ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(_RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            )
            != 0
        ):
            raise LandlockError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)
