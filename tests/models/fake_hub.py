"""A tiny Hugging Face hub stand-in: a real HTTP server on a free loopback port.

It serves the two routes ``hf_hub_download`` / ``get_hf_file_metadata`` use for a model
file, with the headers huggingface_hub 2.x reads (see its ``file_download.py``):

* ``HEAD|GET /{repo_id}/resolve/{revision}/{filename}``: ``X-Repo-Commit``, ``ETag``,
  ``X-Linked-Etag`` (the LFS sha256), ``X-Linked-Size``, ``Content-Length``; 404s carry
  ``X-Error-Code: RepoNotFound|EntryNotFound`` like the real hub.
* With ``cdn=True`` the resolve route answers 302 to ``http://localhost:PORT/cdn/<sha>``,
  a *different origin* (localhost vs 127.0.0.1), as the real hub redirects LFS files to
  its CDN; huggingface_hub then stops at the 302 and reads the metadata from it.
* Range requests (``bytes=N-``) get 206 with ``Content-Range``, so downloads can resume.

Knobs for failure tests: ``serve_content`` (bytes served instead of the real content,
while the headers still report the real sha256), ``drop_after`` (close the connection
after N body bytes, once), ``ignore_range`` (answer 200 with the whole file).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from huggingface_hub.utils import close_session

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    """One LFS file in a fake repo."""

    repo_id: str
    filename: str
    content: bytes
    revision: str = "main"
    serve_content: bytes | None = None  # bytes actually sent, to simulate corruption

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def body(self) -> bytes:
        return self.content if self.serve_content is None else self.serve_content


@dataclass
class Request:
    """What the fake hub saw, for assertions."""

    method: str
    path: str
    range: str | None
    authorization: bool


@dataclass
class FakeHub:
    """Start with ``with FakeHub() as hub:``; ``hub.endpoint`` is the HF_ENDPOINT to use."""

    cdn: bool = False
    ignore_range: bool = False
    drop_after: int | None = None
    files: dict[tuple[str, str, str], HubFile] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def add(self, repo_id: str, filename: str, content: bytes, revision: str = "main") -> HubFile:
        f = HubFile(repo_id, filename, content, revision)
        self.files[(repo_id, revision, filename)] = f
        return f

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def gets(self) -> list[Request]:
        return [r for r in self.requests if r.method == "GET"]

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Close huggingface_hub's shared client first, so no pooled keep-alive connection
        # to this soon-dead server is left for the garbage collector (a ResourceWarning).
        close_session()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        hub = self.fake
        path = unquote(urlsplit(self.path).path)
        hub.requests.append(
            Request(self.command, path, self.headers.get("Range"), self.headers.get("Authorization") is not None)
        )
        if path.startswith("/cdn/"):
            sha = path.removeprefix("/cdn/")
            match = next((f for f in hub.files.values() if f.sha256 == sha), None)
            if match is None:
                return self._empty(404)
            return self._send_file(match, body, include_hub_headers=False)

        parts = path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._empty(404, {"X-Error-Code": "RepoNotFound"})
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if not any(r == repo_id for r, _, _ in hub.files):
            return self._empty(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        f = hub.files.get((repo_id, revision, filename))
        if f is None:
            return self._empty(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        if hub.cdn:
            port = self.server.server_address[1]
            return self._empty(
                302,
                {**self._hub_headers(f), "Location": f"http://localhost:{port}/cdn/{f.sha256}"},
            )
        self._send_file(f, body, include_hub_headers=True)

    def _hub_headers(self, f: HubFile) -> dict[str, str]:
        return {
            "X-Repo-Commit": COMMIT,
            "ETag": '"deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"',  # git sha of the LFS pointer
            "X-Linked-Etag": f'"{f.sha256}"',
            "X-Linked-Size": str(len(f.content)),
        }

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_file(self, f: HubFile, body: bool, include_hub_headers: bool) -> None:
        hub = self.fake
        data = f.body
        start = 0
        rng = self.headers.get("Range")
        status = 200
        headers = self._hub_headers(f) if include_hub_headers else {"ETag": f'"{f.sha256}"'}
        if rng and not hub.ignore_range and body:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        payload = data[start:]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not body:
            return
        if hub.drop_after is not None:
            cut, hub.drop_after = hub.drop_after, None
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)
