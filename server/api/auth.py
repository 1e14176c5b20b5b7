"""API keys: who may use this server.

Anyone who can call ``/v1/agent`` can run Python on this machine, so a server reachable
from the network must demand a key. Keys come from ``--api-key`` (repeatable, or a
comma-separated ``CODEACT_API_KEY``) and ``--api-key-file``; ``check_bind`` refuses a
non-loopback address without one unless ``--insecure-no-auth`` says the operator meant it.

``BearerAuth`` is a plain ASGI middleware (no BaseHTTPMiddleware: it would buffer streamed
answers). It checks ``Authorization: Bearer KEY`` against every key with
``hmac.compare_digest``, so the time taken does not reveal how much of a guess was right.
``/health`` stays open for load balancers and container health checks; ``/`` and
``/static/*`` stay open for the web UI page, which asks the user for the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.errors import error_response
from server.settings import Settings

OPEN_PATHS = frozenset({"/health", "/"})
OPEN_PREFIXES = ("/static/",)


class AuthConfigError(ValueError):
    """The key settings cannot be used (unreadable key file, unsafe bind): a start-up error."""


def load_api_keys(settings: Settings) -> tuple[str, ...]:
    """All configured keys, flags and env first, then the key file; duplicates dropped."""
    keys = [k.strip() for k in settings.api_key if k.strip()]
    path = settings.api_key_file
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise AuthConfigError(f"cannot read the API key file {path}: {reason}") from exc
        from_file = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not from_file:
            raise AuthConfigError(f"the API key file {path} holds no key (one key per line)")
        keys += from_file
    return tuple(dict.fromkeys(keys))


def is_loopback(host: str) -> bool:
    """True only for addresses no other machine can reach; a name other than localhost is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, keys: Sequence[str]) -> None:
    """Refuse to expose code execution to the network without a key."""
    if keys or settings.insecure_no_auth or is_loopback(settings.host):
        return
    raise AuthConfigError(
        f"refusing to serve on {settings.host} without an API key: anyone who can reach it could "
        "run code on this machine; set --api-key-file FILE, CODEACT_API_KEY or --api-key, or pass "
        "--insecure-no-auth if that is really intended"
    )


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


#: ``request.state`` attribute naming the API key a request came with (a digest); absent
#: when the server has no keys.
KEY_ID = "api_key_id"


def key_of(request: Request) -> str:
    """The API key (a digest) ``request`` came with; "" on a server without keys."""
    return str(getattr(request.state, KEY_ID, ""))


class BearerAuth:
    """ASGI middleware: 401 in OpenAI's error shape unless a valid bearer key is sent."""

    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self._keys = [k.encode() for k in keys]

    def valid(self, token: bytes) -> bool:
        ok = False
        for key in self._keys:  # no early exit: every key is compared every time
            ok |= hmac.compare_digest(token, key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        if token is not None and self.valid(token):
            # Who is asking, for per-key limits (never the key itself: a digest of it).
            scope.setdefault("state", {})[KEY_ID] = hashlib.sha256(token).hexdigest()[:16]
            await self.app(scope, receive, send)
            return
        if token is None:
            message = "missing API key: send it as the header `Authorization: Bearer YOUR_KEY`"
            challenge = 'Bearer realm="codeact-server"'
        else:
            message = "invalid API key"
            challenge = 'Bearer realm="codeact-server", error="invalid_token"'
        response = error_response(401, message, code="invalid_api_key", headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)
