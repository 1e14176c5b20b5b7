"""Refuse requests a web page could send through DNS rebinding or from another origin.

A browser keeps a page's origin when the attacker's DNS name is re-pointed at 127.0.0.1
(DNS rebinding, the class of Ollama's CVE-2024-28224): the page can then call this server
as its own origin and read every answer. The name stays the attacker's, though, and the
browser sends it in ``Host``. So two checks run before routing:

- **Host.** Only the names this server is meant to be reached by are accepted, on any
  port: ``localhost``, ``127.0.0.1`` and ``[::1]`` (never a rebinding name: a page
  carrying them was served by this machine), the ``--host`` address itself unless it is a
  wildcard (``0.0.0.0``, ``::``), and every ``--allowed-host``. ``*`` among them turns the
  check off. A request with no ``Host`` (only possible in HTTP/1.0; browsers always send
  one) is refused too. A non-loopback wildcard bind with no ``--allowed-host`` therefore
  answers only under loopback names; ``allowed_hosts`` logs a warning saying so.
- **Origin.** A state-changing request (POST, PUT, PATCH, DELETE) that carries ``Origin``
  must come from this server's own origin (the scheme of the connection and the ``Host``
  it was sent to, with default ports made explicit) or from one of ``--cors-origin``
  (compared exactly, as the CORS middleware compares them; ``*`` accepts any). A request
  without ``Origin`` is not a browser's cross-site request: SDKs and curl send none, so
  they are unaffected, while the built-in page sends its own origin.

Both refusals are 403 in OpenAI's error shape, counted through ``on_refuse`` (the
``codeact_http_refused_requests_total{reason}`` metric). This is a pure ASGI middleware
(BaseHTTPMiddleware would buffer streamed answers). Only ``http`` scopes are checked: the
app serves no WebSockets, and lifespan events carry no request.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.errors import error_response

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
ANY = "*"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}
ECHO_LIMIT = 200
"""At most this many characters of a refused Host or Origin go back in the message."""

RefusalReason = Literal["host", "origin"]


def split_authority(authority: str) -> tuple[str, int | None] | None:
    """``host[:port]`` as it appears in a Host header or a URL, lowercased; None if malformed.

    IPv6 addresses keep their brackets (``[::1]``), so names compare as they are written
    in a URL. A bare IPv6 address (no brackets) is not a valid authority and gives None.
    """
    text = authority.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if colon else None
    if not host or any(c in host for c in "/@ \t") or (":" in host and not host.startswith("[")):
        return None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or int(port_text) > 65535:
        return None
    return host, int(port_text)


def normalize_name(name: str) -> str | None:
    """A configured host name in the form Host headers are compared in (port dropped)."""
    name = name.strip()
    if name == ANY:
        return ANY
    try:
        if ipaddress.ip_address(name).version == 6:
            name = f"[{name}]"  # `::1` as given on the command line
    except ValueError:
        pass
    parsed = split_authority(name)
    return parsed[0] if parsed else None


def configured_names(extra: Iterable[str]) -> set[str]:
    """The ``--allowed-host`` names, normalized; ValueError names one that cannot be a Host.

    The CLI calls this before loading the model, so a typo is a one-line start-up error.
    """
    names: set[str] = set()
    for raw in extra:
        name = normalize_name(raw)
        if name is None:
            raise ValueError(f"--allowed-host {raw!r} is not a host name or address")
        names.add(name)
    return names


def allowed_hosts(bind: str, extra: Iterable[str]) -> frozenset[str]:
    """The Host names to accept: loopback names, the bind address, and ``--allowed-host``."""
    names = set(LOOPBACK_NAMES) | configured_names(extra)
    if not _is_wildcard(bind):
        bound = normalize_name(bind)
        if bound is not None:
            names.add(bound)
    elif names == LOOPBACK_NAMES:
        log.warning(
            "serving on %s with no --allowed-host: requests are accepted only under the names "
            "localhost, 127.0.0.1 and [::1]; name the host clients use with --allowed-host NAME "
            "(or CODEACT_ALLOWED_HOST)",
            bind,
        )
    return frozenset(names)


def _is_wildcard(bind: str) -> bool:
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_unspecified
    except ValueError:
        return False


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    return None


def _echo(value: str) -> str:
    return value if len(value) <= ECHO_LIMIT else value[:ECHO_LIMIT] + "..."


class HostGuard:
    """ASGI middleware: 403 for a Host not allowed, or a foreign Origin on a state change."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: frozenset[str],
        cors_origins: Iterable[str] = (),
        on_refuse: Callable[[RefusalReason], None] = lambda _reason: None,
    ) -> None:
        self.app = app
        self.any_host = ANY in hosts
        self.hosts = hosts
        self.cors_origins = frozenset(cors_origins)
        self.any_origin = ANY in self.cors_origins
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host_header = _header(scope, b"host")
        authority = split_authority(host_header) if host_header is not None else None
        if not self.any_host and (authority is None or authority[0] not in self.hosts):
            shown = "no Host header" if host_header is None else f"Host {_echo(host_header)!r}"
            await self._refuse(
                "host",
                f"{shown} is not a name this server answers to; requests under other names are "
                "refused so that web pages cannot reach it through DNS rebinding (the operator "
                "can add names with --allowed-host or CODEACT_ALLOWED_HOST)",
                "host_not_allowed",
                scope,
                receive,
                send,
            )
            return
        origin = _header(scope, b"origin")
        if origin is not None and scope["method"] in STATE_CHANGING and not self._origin_ok(origin, scope, authority):
            await self._refuse(
                "origin",
                f"requests from the web origin {_echo(origin)!r} may not change anything here: "
                "only this server's own page and the origins listed with --cors-origin may",
                "origin_not_allowed",
                scope,
                receive,
                send,
            )
            return
        await self.app(scope, receive, send)

    def _origin_ok(self, origin: str, scope: Scope, authority: tuple[str, int | None] | None) -> bool:
        if self.any_origin or origin in self.cors_origins:
            return True
        own_scheme = scope.get("scheme", "http")
        if authority is None or own_scheme not in DEFAULT_PORTS:
            return False
        scheme, separator, rest = origin.partition("://")
        scheme = scheme.lower()
        parsed = split_authority(rest) if separator and scheme in DEFAULT_PORTS else None
        if parsed is None:
            return False  # `null` (sandboxed frames, file pages) or not an origin at all
        host, port = authority
        origin_host, origin_port = parsed
        return (scheme, origin_host, origin_port or DEFAULT_PORTS[scheme]) == (
            own_scheme,
            host,
            port or DEFAULT_PORTS[own_scheme],
        )

    async def _refuse(
        self, reason: RefusalReason, message: str, code: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.on_refuse(reason)
        response = error_response(403, message, type="permission_error", code=code)
        await response(scope, receive, send)
