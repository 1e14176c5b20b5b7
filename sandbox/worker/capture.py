"""Output capture inside the worker: bounded, head-and-tail, process-wide.

Why both a Python-level writer and file-descriptor drains: `print` goes through
`sys.stdout`, but child processes (`os.system`, `subprocess`) write straight to fds 1 and
2. Both feed the same bounded buffer, so a flood costs neither memory nor the worker's
life: the first and last halves are kept and the middle is replaced by a marker. Beyond a
hard cap the Python-level writer raises `OutputLimitExceeded` to stop the run.
Stdlib-only: imported by the worker at start-up.
"""

from __future__ import annotations

import contextlib
import io
import os
import selectors
import threading
from collections import deque


class OutputLimitExceeded(BaseException):
    """Raised into user code once its output passes the hard cap (a flood, not a log).

    A BaseException so that a bare `except Exception` in the flooding loop cannot swallow it.
    """


class CappedBuffer:
    """Keeps the first and last `limit // 2` bytes written, counting everything."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        if len(data) >= self.tail_limit:
            self.tail.clear()
            data = data[-self.tail_limit :]
            self.tail_size = 0
        self.tail.append(data)
        self.tail_size += len(data)
        while self.tail_size - len(self.tail[0]) >= self.tail_limit:
            self.tail_size -= len(self.tail.popleft())

    @property
    def truncated(self) -> bool:
        return self.total > self.head_limit + self.tail_limit

    def render(self) -> str:
        """Decode the kept bytes, marking the cut when something was dropped."""
        tail = b"".join(self.tail)
        if not self.truncated:
            return (bytes(self.head) + tail).decode("utf-8", "replace")
        tail = tail[-self.tail_limit :]
        dropped = self.total - len(self.head) - len(tail)
        marker = f"\n... [output truncated: {dropped} bytes omitted, {self.total} bytes in total] ...\n"
        return self.head.decode("utf-8", "replace") + marker + tail.decode("utf-8", "replace")


class Capture:
    """The per-run pair of buffers plus the fd drain thread that feeds them."""

    def __init__(self, out_fd: int, err_fd: int) -> None:
        self.lock = threading.Lock()
        self.limit = 64_000
        self.hard_cap = 4 * 1024 * 1024
        self.stdout = CappedBuffer(self.limit)
        self.stderr = CappedBuffer(self.limit)
        self._fds = {out_fd: "stdout", err_fd: "stderr"}
        for fd in self._fds:
            os.set_blocking(fd, False)
        self._selector = selectors.DefaultSelector()
        for fd in self._fds:
            self._selector.register(fd, selectors.EVENT_READ)
        threading.Thread(target=self._drain_forever, name="sandbox-drain", daemon=True).start()

    def reset(self, limit: int, hard_cap: int) -> None:
        """Start fresh buffers for a new run (output of the last run was already sent)."""
        with self.lock:
            self.limit, self.hard_cap = limit, hard_cap
            self.stdout = CappedBuffer(limit)
            self.stderr = CappedBuffer(limit)

    @property
    def over_hard_cap(self) -> bool:
        return self.stdout.total + self.stderr.total > self.hard_cap

    def append(self, stream: str, data: bytes) -> None:
        with self.lock:
            (self.stdout if stream == "stdout" else self.stderr).write(data)

    def drain_now(self) -> None:
        """Pull whatever child processes already wrote, so it lands in this run's result."""
        for fd, stream in self._fds.items():
            while True:
                try:
                    data = os.read(fd, 1 << 16)
                except (BlockingIOError, InterruptedError):
                    break
                if not data:
                    break
                self.append(stream, data)

    def _drain_forever(self) -> None:
        while True:
            for key, _ in self._selector.select():
                try:
                    data = os.read(key.fd, 1 << 16)  # type: ignore[arg-type]
                except (BlockingIOError, InterruptedError):
                    continue
                if data:
                    self.append(self._fds[key.fd], data)  # type: ignore[index]


class CaptureWriter(io.TextIOBase):
    """`sys.stdout`/`sys.stderr` replacement that writes into the capture buffers.

    In a forked child (user code called `os.fork`) the in-memory buffer would be lost with
    the child, so `passthrough` sends text to the inherited fd instead, where the parent's
    drain thread picks it up.
    """

    passthrough = False

    def __init__(self, capture: Capture, stream: str, fd: int) -> None:
        super().__init__()
        self._capture = capture
        self._stream = stream
        self._fd = fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        data = text.encode("utf-8", "backslashreplace")
        if CaptureWriter.passthrough:
            with contextlib.suppress(OSError):
                os.write(self._fd, data)
            return len(text)
        self._capture.append(self._stream, data)
        if self._capture.over_hard_cap:
            raise OutputLimitExceeded(f"output exceeded {self._capture.hard_cap} bytes; the run was stopped")
        return len(text)

    def flush(self) -> None:
        return None
