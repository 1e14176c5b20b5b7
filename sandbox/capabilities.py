"""Drop every Linux capability from the worker, for good (the ``landlock`` level as root).

Why: at ``landlock`` a root server cannot always give the worker a uid of its own (the
interpreter may live where other uids cannot read, e.g. under /root). Landlock then keeps
root's code off the file system and away from other processes, but not from what
capabilities allow without touching either: reboot(2), loading kernel modules, setting the
clock, changing file owners in the workspace. With the bounding set, the ambient set and
the process's own sets emptied, neither the worker nor anything it executes holds one.
Root's exemption from RLIMIT_NPROC stays (the kernel ties it to uid 0, not to a capability).

Stdlib only, imported only by the worker.
"""

from __future__ import annotations

import ctypes
import errno

_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
_CAPABILITY_VERSION_3 = 0x20080522
_MAX_CAPS = 64


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_all() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets; OSError if not."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(_MAX_CAPS):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            if err == errno.EINVAL:  # past the kernel's last capability
                break
            raise OSError(err, f"could not drop capability {cap} from the bounding set")
    if libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "could not clear the ambient capabilities")
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset to nothing failed")


def effective() -> int:
    """The process's effective capability mask (0 after `drop_all`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    return data[0].effective | data[1].effective << 32
