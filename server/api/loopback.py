"""Serve an app on a private loopback port, in a thread of this process, for a while.

Three callers want the server exactly as users meet it (real uvicorn, real sockets, real
HTTP) while they keep the app's engine and sandbox pool in their own process: the CLI's
in-process ``codeact-server run``, the end-to-end tests and the benchmarks. The port is
picked by the OS when the socket is bound, so concurrent runs never collide, and ``url``
is known before uvicorn starts.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


class LoopbackServer:
    """``with LoopbackServer(app) as server:`` serves ``app`` at ``server.url`` until exit.

    Start-up runs the app's lifespan (a failing one is an error here, not a half-started
    server); exit asks uvicorn to stop, which runs the lifespan's shutdown (closing the
    sandbox pool, and the engine when the app owns it), then closes the socket.
    """

    def __init__(self, app: FastAPI, *, log_level: str = "warning", name: str = "loopback-uvicorn") -> None:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets, and without it
        # every small response waits ~40 ms for the client's delayed ACK.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=name, daemon=True
        )

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError("uvicorn stopped during start-up (see its log above)")
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"uvicorn did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=STOP_TIMEOUT_S)
        self._sock.close()
