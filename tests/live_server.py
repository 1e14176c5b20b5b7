"""The tests' live server is the package's own: real uvicorn on a free loopback port, in a
thread (``server.api.loopback``), under the name the test modules use."""

from __future__ import annotations

from server.api.loopback import LoopbackServer as LiveServer

__all__ = ["LiveServer"]
