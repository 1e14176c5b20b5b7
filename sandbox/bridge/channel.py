"""`WorkerChannel`: the framed pipe pair to one worker, read and written without ever blocking.

Why non-blocking both ways: the worker is hostile (see the package docstring). A blocking
write to a worker that never reads its pipe froze the thread that wrote it, and the server
with it when that thread was the event loop's; a blocking read of a frame that never
completes does the same. So both fds are non-blocking: outgoing frames wait in a buffer that
the caller flushes whenever select says the pipe has room, under a deadline the caller owns,
and incoming bytes are split into frames only once complete.

Why the caller names the largest frame it takes: what a worker may send depends on the
protocol's state (nothing while idle, a call's arguments or a run's capped output while it
runs), so a frame over that size is refused at its header, before its body is read.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from typing import Any

from sandbox import protocol

#: Most bytes taken from the pipe per wake-up, so a flood is read at the pace it is checked.
READ_CHUNK = 1 << 20


class WorkerDied(Exception):
    """The worker's pipe closed, or it broke the protocol: treat as a crash."""


class ProtocolViolation(WorkerDied):
    """The worker sent what the server does not accept now (malformed, oversized, unexpected),
    or stopped reading what it was sent: the worker is killed, never trusted again."""


class WorkerChannel:
    """Length-prefixed JSON frames over a worker's stdin/stdout pipes (see the module docstring)."""

    def __init__(self, to_worker: int, from_worker: int) -> None:
        self.to_worker, self.from_worker = to_worker, from_worker
        os.set_blocking(to_worker, False)
        os.set_blocking(from_worker, False)
        self._incoming = bytearray()
        self._outgoing = bytearray()

    # -- writing ---------------------------------------------------------------------
    def queue(self, message: dict[str, Any]) -> None:
        """Add a frame to the outgoing buffer; `flush` (or `wait`) writes it."""
        self._outgoing += protocol.encode(message)

    @property
    def writing(self) -> bool:
        """Whether queued bytes are still waiting for room in the pipe."""
        return bool(self._outgoing)

    def flush(self) -> None:
        """Write what the pipe takes now; never blocks."""
        while self._outgoing:
            try:
                written = os.write(self.to_worker, self._outgoing[:READ_CHUNK])
            except BlockingIOError:
                return
            except OSError as exc:
                raise WorkerDied(f"cannot write to worker: {exc}") from exc
            del self._outgoing[:written]

    def send(self, message: dict[str, Any], deadline: float) -> None:
        """Queue a frame and write it all by `deadline` (ProtocolViolation: the worker did not read)."""
        self.queue(message)
        while True:
            self.flush()
            if not self._outgoing:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolViolation("the worker stopped reading its pipe")
            select.select([], [self.to_worker], [], left)

    # -- reading ---------------------------------------------------------------------
    def fill(self) -> None:
        """Read what is available now (one chunk at most); WorkerDied at end of file."""
        try:
            chunk = os.read(self.from_worker, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            raise WorkerDied(str(exc)) from exc
        if not chunk:
            raise WorkerDied("worker exited")
        self._incoming += chunk

    @property
    def buffered(self) -> bool:
        """Whether bytes of a frame not yet taken are held."""
        return bool(self._incoming)

    def take(self, max_frame: int) -> dict[str, Any] | None:
        """The next complete frame, or None; ProtocolViolation when it is over `max_frame`
        bytes (checked at its header) or does not decode (see `protocol.decode`)."""
        size = protocol.HEADER.size
        if len(self._incoming) < size:
            return None
        (length,) = protocol.HEADER.unpack_from(self._incoming)
        if length > max_frame:
            raise ProtocolViolation(f"the worker sent a frame of {length} bytes; at most {max_frame} were expected")
        if len(self._incoming) < size + length:
            return None
        body = bytes(self._incoming[size : size + length])
        del self._incoming[: size + length]
        try:
            return protocol.decode(body)
        except protocol.ProtocolError as exc:
            raise ProtocolViolation(f"the worker sent a malformed frame: {exc}") from None

    def wait(self, timeout: float, also: tuple[int, ...] = ()) -> list[int]:
        """Until the worker wrote, the pipe took queued bytes, or one of `also` is readable;
        the readable fds among `also` (the worker's is read into the buffer here)."""
        writers = [self.to_worker] if self._outgoing else []
        readable, writable, _ = select.select([self.from_worker, *also], writers, [], max(timeout, 0.0))
        if writable:
            self.flush()
        if self.from_worker in readable:
            self.fill()
        return [fd for fd in readable if fd != self.from_worker]

    def receive(self, deadline: float, poll: float | None = None, max_frame: int = protocol.MAX_FRAME_BYTES) -> Any:
        """Next frame; None when `poll` seconds passed first; TimeoutError at `deadline`."""
        poll_until = time.monotonic() + poll if poll is not None else deadline
        while True:
            frame = self.take(max_frame)
            if frame is not None:
                return frame
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError("worker did not answer in time")
            if now >= poll_until:
                return None
            self.wait(min(deadline, poll_until) - now)

    def idle_input(self) -> bool:
        """Whether the worker wrote anything (or closed its pipe) that nobody asked for."""
        if self._incoming:
            return True
        with contextlib.suppress(OSError, ValueError):
            readable, _, _ = select.select([self.from_worker], [], [], 0)
            return bool(readable)
        return True
