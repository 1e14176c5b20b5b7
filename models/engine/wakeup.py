"""Wake an asyncio loop from the engine's owner thread without giving up the GIL.

Why: every generated token is handed from the owner thread to the event loop. The obvious
``loop.call_soon_threadsafe`` writes a byte to the loop's self-pipe with ``socket.send``,
and ``socket.send`` releases the GIL around the system call. The event loop thread, just
woken by that very byte, takes the GIL and runs its share of the token (the stream, the
SSE chunk, the socket write) while the owner thread, back from ``send``, waits for the
GIL before it may sample or start the next ``llama_decode``. On a busy machine that wait
is a scheduler time slice, not microseconds: ``benchmarks/token_overhead.py`` measured a
median 2.5 ms between two decode steps with it, against 0.1 ms for a bare decode loop
(``benchmarks/RESULTS.md``, token_overhead).

Here the owner thread writes the wake-up byte with libc's ``write`` called through
``ctypes.PyDLL``, which keeps the GIL: the event loop wakes, asks for the GIL, and gets it
when the owner thread releases it anyway, inside its next ``llama_decode``. The loop's
share of the token then runs beside the model instead of in front of it. The byte goes to
a socket pair of our own that the loop watches with ``add_reader`` (public API); the write
end is non-blocking, so the call never waits while it holds the GIL (a full buffer means a
wake-up is already pending, which is all we need). One ``LoopWaker`` per event loop,
created on that loop's thread; its sockets close when the loop is garbage-collected.
Where libc cannot be loaded this way (not a POSIX system), ``call_soon_threadsafe`` is used.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import socket
import threading
import weakref
from collections import deque
from collections.abc import Callable


def _load_write() -> Callable[[int, ctypes.Array[ctypes.c_char], int], int] | None:
    if os.name != "posix":
        return None
    try:
        libc = ctypes.PyDLL(ctypes.util.find_library("c"))  # PyDLL: calls keep the GIL
        write = libc.write
    except (OSError, AttributeError):
        return None
    write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    write.restype = ctypes.c_ssize_t
    return write


_write = _load_write()
_BYTE = ctypes.create_string_buffer(b"\0", 1)


class LoopWaker:
    """Runs callbacks on ``loop``, woken from any thread by a write that keeps the GIL."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the loop keeps its waker alive (add_reader), not the reverse
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._callbacks: deque[Callable[[], object]] = deque()
        self._lock = threading.Lock()
        self._signalled = False
        loop.add_reader(self._reader.fileno(), self._run)
        weakref.finalize(loop, _close, self._reader, self._writer)

    def call(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the loop soon; raises RuntimeError when the loop is closed."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            raise RuntimeError("the event loop is closed")
        with self._lock:
            self._callbacks.append(callback)
            if self._signalled:
                return  # a wake-up is on its way; it will run this callback too
            self._signalled = True
        if _write is None or _write(self._writer.fileno(), _BYTE, 1) < 0:  # EAGAIN: a byte is already there
            loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        with self._lock:
            callbacks = list(self._callbacks)
            self._callbacks.clear()
            self._signalled = False
        for callback in callbacks:
            callback()


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        sock.close()


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaker] = weakref.WeakKeyDictionary()


def loop_waker(loop: asyncio.AbstractEventLoop) -> LoopWaker:
    """The waker of ``loop``; call on the loop's own thread (``add_reader`` is not thread-safe)."""
    waker = _wakers.get(loop)
    if waker is None:
        waker = _wakers[loop] = LoopWaker(loop)
    return waker
