"""Capabilities of the worker at the ``landlock`` level when the server is root.

Why: a root server gives each worker a uid of its own (so RLIMIT_NPROC holds: the kernel
exempts uid 0 whatever its capabilities, and the code cannot become root again). But the
interpreter may live where other uids cannot read (a venv under /root). Without namespaces
there is no bind mount to open the way, so `become` keeps exactly one capability across the
uid change, CAP_DAC_READ_SEARCH (read and search past file modes), in the ambient set so
programs the code starts keep it too. Landlock still decides *which* files may be read: the
capability only stops file modes from refusing what Landlock allows (seccomp refuses
open_by_handle_at, the one call that capability opens beyond paths).

`drop_all` is the fallback for a worker that stays uid 0: no capability at all (no reboot,
module loading, clock setting, chown).

Stdlib only, imported only by the worker.
"""

from __future__ import annotations

import ctypes
import errno
import os

CAP_DAC_READ_SEARCH, CAP_SETPCAP = 2, 8
_PR_SET_KEEPCAPS, _PR_CAPBSET_DROP, _PR_CAP_AMBIENT = 8, 24, 47
_PR_CAP_AMBIENT_RAISE, _PR_CAP_AMBIENT_CLEAR_ALL = 2, 4
_CAPABILITY_VERSION_3 = 0x20080522
_MAX_CAPS = 64


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _prctl(libc: ctypes.CDLL, *args: int) -> None:
    if libc.prctl(*args, *([0] * (5 - len(args)))) != 0:
        raise OSError(ctypes.get_errno(), f"prctl{args} failed")


def _capset(libc: ctypes.CDLL, effective: int, permitted: int, inheritable: int) -> None:
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for word in (0, 1):
        data[word].effective = (effective >> 32 * word) & 0xFFFFFFFF
        data[word].permitted = (permitted >> 32 * word) & 0xFFFFFFFF
        data[word].inheritable = (inheritable >> 32 * word) & 0xFFFFFFFF
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _drop_bounding(libc: ctypes.CDLL, keep: int = 0) -> None:
    for cap in range(_MAX_CAPS):
        if keep >> cap & 1:
            continue
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            if err == errno.EINVAL:  # past the kernel's last capability
                break
            raise OSError(err, f"could not drop capability {cap} from the bounding set")


def become(uid: int, gid: int, keep: int) -> None:
    """As root: switch to uid/gid, holding capability `keep` only (also ambient)."""
    libc = ctypes.CDLL(None, use_errno=True)
    mask = 1 << keep
    _prctl(libc, _PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # permitted kept (KEEPCAPS), effective now empty
    _capset(libc, mask | 1 << CAP_SETPCAP, _permitted(libc), 0)
    _drop_bounding(libc, keep=mask)
    _capset(libc, mask, mask, mask)
    _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, keep)
    _prctl(libc, _PR_SET_KEEPCAPS, 0)


def drop_all() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets; OSError if not."""
    libc = ctypes.CDLL(None, use_errno=True)
    _drop_bounding(libc)
    _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    _capset(libc, 0, 0, 0)


def _permitted(libc: ctypes.CDLL) -> int:
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    return data[0].permitted | data[1].permitted << 32
