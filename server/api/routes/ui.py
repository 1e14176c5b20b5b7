"""The built-in web page: ``/`` and its files under ``/static/``, served from ``server/static``.

The page is plain HTML, CSS and JavaScript modules checked into the repository, so an
air-gapped user needs no build step, no CDN and no other service: the same process that
runs the agent serves its UI. Only the file types the page uses are served, each with an
explicit content type (a module script served as ``text/plain`` by a misconfigured
``mimetypes`` table would not load), and only from inside the static folder.

These routes carry no secrets, so they stay reachable without an API key: the page asks
for the key itself and sends it as a Bearer token on the API calls it makes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from server.api.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

# Revalidate on every load (cheap: ETag / Last-Modified) so an upgraded server never
# runs against a cached older script.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/static/{file_path:path}")
async def static_file(file_path: str) -> FileResponse:
    return _file(file_path)


def _file(relative: str) -> FileResponse:
    root = STATIC_DIR.resolve()
    target = (root / relative).resolve()
    media_type = CONTENT_TYPES.get(target.suffix)
    if not target.is_relative_to(root) or media_type is None or not target.is_file():
        raise NotFound(f"no static file '{relative}'")
    return FileResponse(target, media_type=media_type, headers=NO_CACHE)
