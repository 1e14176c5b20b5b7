"""DNS rebinding and foreign origins, over real HTTP (uvicorn, httpx, the openai client, Chromium).

The attack (issue 20): a page at ``http://attacker.example:8000`` re-points its name at
127.0.0.1; the browser then sends the page's requests to this server with
``Host: attacker.example:8000`` and treats the answers as same-origin. Every route must
refuse that Host before routing, and a state-changing request from another origin must be
refused, while SDKs (no Origin), the server's own page and configured names keep working.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.api.host_guard import LOOPBACK_NAMES, allowed_hosts, split_authority
from server.cli.errors import CLIError
from server.cli.main import build_parser, check_security, settings_from_args
from server.settings import Settings
from tests.live_server import LiveServer

EVIL = "attacker.example"
AGENT_BODY = {
    "model": "scripted",
    "messages": [{"role": "user", "content": "list the workspace"}],
    # What the attacker sent: tool source runs in the sandbox when a session starts.
    "tools": [{"name": "pwn", "source": "import pathlib\npathlib.Path('pwned.txt').write_text('x')\n"}],
}
CHAT_BODY = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def answer(_prompt: str) -> str:
    return "<solution>ok</solution>"


def make_app(settings: Settings) -> tuple[FastAPI, ScriptedEngine]:
    engine = ScriptedEngine(responder=answer)
    return create_app(settings, engine), engine


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LiveServer, FastAPI, ScriptedEngine]]:
    """A default server: loopback bind, no key, no CORS, as `make serve` runs it."""
    app, engine = make_app(Settings(sandbox_pool_size=0))
    with LiveServer(app) as live:
        yield live, app, engine


def refused_counts(url: str, host: str = "127.0.0.1") -> dict[str, float]:
    text = httpx.get(url + "/metrics", headers={"Host": host}).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "codeact_http_refused_requests"]
    return {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 403, (response.request.method, response.request.url, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["type"] == "permission_error"


# -- pure parts ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("authority", "parsed"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost:8000", ("localhost", 8000)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:8000", ("[::1]", 8000)),
        ("[::1]", ("[::1]", None)),
        ("::1", None),  # a bare IPv6 address is not a valid Host
        ("[::1", None),
        ("[::1]x", None),
        ("host:port", None),
        ("host:99999", None),
        ("a/b", None),
        ("user@host", None),
        ("", None),
    ],
)
def test_split_authority(authority: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_authority(authority) == parsed


def test_allowed_names_follow_the_bind(caplog: pytest.LogCaptureFixture) -> None:
    assert allowed_hosts("127.0.0.1", []) == LOOPBACK_NAMES
    assert allowed_hosts("::1", []) == LOOPBACK_NAMES
    assert allowed_hosts("127.0.0.2", []) == LOOPBACK_NAMES | {"127.0.0.2"}
    assert allowed_hosts("192.168.1.20", []) == LOOPBACK_NAMES | {"192.168.1.20"}
    named = allowed_hosts("127.0.0.1", ["GPU-Box.lan", "fe80::1", "ui.example:8443", "*"])
    assert named == LOOPBACK_NAMES | {"gpu-box.lan", "[fe80::1]", "ui.example", "*"}
    assert not caplog.records
    # A wildcard bind with no names: only loopback names get in, and the log says how to add some.
    with caplog.at_level(logging.WARNING, logger="server.api.host_guard"):
        assert allowed_hosts("0.0.0.0", []) == LOOPBACK_NAMES
    assert "--allowed-host" in caplog.text and "0.0.0.0" in caplog.text
    caplog.clear()
    assert allowed_hosts("::", ["gpu-box.lan"]) == LOOPBACK_NAMES | {"gpu-box.lan"}
    assert not caplog.records
    with pytest.raises(ValueError, match="not a host name"):
        allowed_hosts("127.0.0.1", ["http://gpu-box.lan/"])


def test_allowed_hosts_from_flags_env_and_help(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    args = build_parser().parse_args(["serve", "--allowed-host", "a.lan", "--allowed-host", "b.lan"])
    assert settings_from_args(args).allowed_host == ["a.lan", "b.lan"]
    monkeypatch.setenv("CODEACT_ALLOWED_HOST", "a.lan, b.lan,")
    assert Settings().allowed_host == ["a.lan", "b.lan"]
    with pytest.raises(CLIError, match="--allowed-host 'a/b'"):
        check_security(Settings(allowed_host=["a/b"]))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--allowed-host VALUE" in help_text and "`*` accepts any Host: insecure" in help_text


# -- a default server over real HTTP --------------------------------------------------------
REQUESTS = [
    ("GET", "/", None),
    ("GET", "/static/app.js", None),
    ("GET", "/health", None),
    ("GET", "/v1/models", None),
    ("GET", "/metrics", None),
    ("GET", "/docs", None),
    ("GET", "/openapi.json", None),
    ("POST", "/v1/agent", AGENT_BODY),
    ("POST", "/v1/agent/chat/completions", AGENT_BODY),
    ("POST", "/v1/chat/completions", CHAT_BODY),
    ("POST", "/v1/completions", {"model": "scripted", "prompt": "hi", "max_tokens": 4}),
    ("GET", "/v1/agent/sessions/sess_x", None),
    ("GET", "/v1/agent/sessions/sess_x/files/a.png", None),
    ("DELETE", "/v1/agent/sessions/sess_x", None),
    ("OPTIONS", "/v1/agent", None),
    ("GET", "/no/such/route", None),
]


def test_a_rebinding_host_is_refused_on_every_route(served) -> None:
    live, app, engine = served
    before = refused_counts(live.url)
    served_before, sessions_before = len(engine.requests), len(app.state.agent.sessions)
    hosts = [f"{EVIL}:{live.port}", EVIL, f"localhost.{EVIL}", "127.0.0.1.nip.io", "localhost.", "[::2]"]
    for host in hosts:
        for method, path, body in REQUESTS:
            headers = {"Host": host, "Origin": f"http://{host}"}
            response = httpx.request(method, live.url + path, json=body, headers=headers)
            assert_refused(response, "host_not_allowed")
            assert "DNS rebinding" in response.json()["error"]["message"]
    # Nothing reached the model or started a session (so the tool source never ran).
    assert len(engine.requests) == served_before and len(app.state.agent.sessions) == sessions_before
    after = refused_counts(live.url)
    assert after["host"] - before["host"] == len(hosts) * len(REQUESTS)
    assert after["origin"] == before["origin"]


def test_a_request_without_host_is_refused(served) -> None:
    """HTTP/1.0 allows leaving Host out; the guard cannot tell who that is, so it refuses."""
    live, _, _ = served
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 403") and b"no Host header" in reply


def test_loopback_names_are_accepted_on_any_port(served) -> None:
    live, _, _ = served
    for host in (
        f"127.0.0.1:{live.port}",
        f"localhost:{live.port}",
        f"LOCALHOST:{live.port}",
        f"[::1]:{live.port}",
        "localhost",
        "127.0.0.1:1",
    ):
        assert httpx.get(live.url + "/v1/models", headers={"Host": host}).status_code == 200, host
        assert httpx.get(live.url + "/", headers={"Host": host}).status_code == 200, host


def test_a_foreign_origin_cannot_post_or_delete(served) -> None:
    live, app, engine = served
    sessions_before = len(app.state.agent.sessions)
    created = httpx.post(live.url + "/v1/agent", json=AGENT_BODY, timeout=60)
    assert created.status_code == 200, created.text
    session_id = created.json()["agent"]["session_id"]
    served_before = len(engine.requests)
    before = refused_counts(live.url)
    foreign = [
        f"http://{EVIL}",
        f"http://{EVIL}:{live.port}",
        f"http://127.0.0.1:{live.port + 1}",  # another local service's page
        f"https://127.0.0.1:{live.port}",  # same host and port, other scheme
        "null",  # sandboxed frames and file:// pages
        f"http://127.0.0.1:{live.port}/",  # not an origin at all
    ]
    for origin in foreign:
        headers = {"Origin": origin}
        assert_refused(httpx.post(live.url + "/v1/agent", json=AGENT_BODY, headers=headers), "origin_not_allowed")
        plain = httpx.post(live.url + "/v1/agent", content="{}", headers={**headers, "Content-Type": "text/plain"})
        assert_refused(plain, "origin_not_allowed")  # what an HTML form may send without CORS
        chat = httpx.post(live.url + "/v1/chat/completions", json=CHAT_BODY, headers=headers)
        assert_refused(chat, "origin_not_allowed")
        gone = httpx.delete(f"{live.url}/v1/agent/sessions/{session_id}", headers=headers)
        assert_refused(gone, "origin_not_allowed")
    assert len(engine.requests) == served_before
    assert httpx.get(f"{live.url}/v1/agent/sessions/{session_id}").status_code == 200
    after = refused_counts(live.url)
    assert after["origin"] - before["origin"] == 4 * len(foreign) and after["host"] == before["host"]
    # Reads are not state changes: without CORS headers the browser hides the answer anyway.
    assert httpx.get(live.url + "/v1/models", headers={"Origin": f"http://{EVIL}"}).status_code == 200
    # The server's own origin, under each loopback name, may change state.
    for host in (f"127.0.0.1:{live.port}", f"localhost:{live.port}", f"[::1]:{live.port}"):
        own = {"Host": host, "Origin": f"http://{host}"}
        assert httpx.post(live.url + "/v1/chat/completions", json=CHAT_BODY, headers=own).status_code == 200
    own = {"Origin": live.url}
    assert httpx.delete(f"{live.url}/v1/agent/sessions/{session_id}", headers=own).status_code == 200
    assert len(app.state.agent.sessions) == sessions_before


def test_the_openai_client_is_unaffected(served) -> None:
    live, _, _ = served
    with openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0) as client:
        assert client.models.list().data[0].id == "scripted"
        chat = client.chat.completions.create(model="scripted", messages=CHAT_BODY["messages"], max_tokens=8)
        assert chat.choices[0].message.content
    with openai.OpenAI(base_url=live.url + "/v1/agent", api_key="unused", max_retries=0) as client:
        done = client.chat.completions.create(model="scripted", messages=CHAT_BODY["messages"])
        assert done.choices[0].message.content and "ok" in done.choices[0].message.content
    # Pointed at a rebinding name, the SDK gets a PermissionDeniedError, not an answer.
    rebinding = httpx.Client(headers={"Host": f"{EVIL}:{live.port}"})
    with (
        openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, http_client=rebinding) as client,
        pytest.raises(openai.PermissionDeniedError, match="DNS rebinding"),
    ):
        client.models.list()


# -- configured names and origins -------------------------------------------------------------
def test_configured_hosts_and_origins_are_accepted() -> None:
    settings = Settings(
        sandbox_pool_size=0, allowed_host=["gpu-box.lan", "10.0.0.7"], cors_origin=["https://ui.example"]
    )
    app, _ = make_app(settings)
    with LiveServer(app) as live:
        for host in (f"gpu-box.lan:{live.port}", "GPU-BOX.LAN", "10.0.0.7:8000", f"localhost:{live.port}"):
            assert httpx.get(live.url + "/health", headers={"Host": host}).status_code == 200, host
            own = {"Host": host, "Origin": f"http://{host.lower()}"}
            ok = httpx.post(live.url + "/v1/chat/completions", json=CHAT_BODY, headers=own)
            assert ok.status_code == 200, (host, ok.text)
        assert_refused(httpx.get(live.url + "/health", headers={"Host": f"other.lan:{live.port}"}), "host_not_allowed")
        # A listed CORS origin may post, and the CORS layer still answers it.
        listed = {"Origin": "https://ui.example"}
        ok = httpx.post(live.url + "/v1/chat/completions", json=CHAT_BODY, headers=listed)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://ui.example"
        preflight = {
            **listed,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        assert httpx.options(live.url + "/v1/chat/completions", headers=preflight).status_code == 200
        other = {"Origin": "https://evil.example"}
        refused = httpx.post(live.url + "/v1/chat/completions", json=CHAT_BODY, headers=other)
        assert_refused(refused, "origin_not_allowed")
        assert refused_counts(live.url) == {"host": 1, "origin": 1}


def test_a_wildcard_bind_without_names_answers_only_loopback_names() -> None:
    app, _ = make_app(Settings(host="0.0.0.0", sandbox_pool_size=0))
    with LiveServer(app) as live:  # bound to 127.0.0.1 here; the guard follows settings.host
        assert httpx.get(live.url + "/health").status_code == 200
        assert_refused(httpx.get(live.url + "/health", headers={"Host": "gpu-box.lan"}), "host_not_allowed")


def test_star_accepts_any_host_and_any_origin() -> None:
    app, _ = make_app(Settings(sandbox_pool_size=0, allowed_host=["*"], cors_origin=["*"]))
    with LiveServer(app) as live:
        headers = {"Host": f"{EVIL}:{live.port}", "Origin": "https://elsewhere.example"}
        assert httpx.post(live.url + "/v1/chat/completions", json=CHAT_BODY, headers=headers).status_code == 200
        assert refused_counts(live.url) == {"host": 0, "origin": 0}


# -- the attack in a real browser -------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

ATTACK = """async () => {
  const post = (path, body) => fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                            body: JSON.stringify(body)});
  const results = {};
  for (const [name, call] of Object.entries({
    models: () => fetch("/v1/models"),
    health: () => fetch("/health"),
    agent: () => post("/v1/agent", %s),
    remove: () => fetch("/v1/agent/sessions/sess_x", {method: "DELETE"}),
  })) {
    const response = await call();
    results[name] = [response.status, (await response.json()).error?.code ?? null];
  }
  return results;
}"""


def test_a_rebinding_page_in_chromium_reads_nothing(served) -> None:
    """Chromium resolves attacker.example to 127.0.0.1 (as after rebinding); the attacker's page
    is what the browser loaded first, so its fetches are same-origin and could read answers."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    live, app, engine = served
    served_before, sessions_before = len(engine.requests), len(app.state.agent.sessions)
    attacker_page = f"http://{EVIL}:{live.port}/"
    # Chromium's own Private/Local Network Access checks are turned off: Firefox and Safari
    # have none, and this test is about what the server refuses, not what Chromium blocks.
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--host-resolver-rules=MAP {EVIL} 127.0.0.1",
        "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
        "LocalNetworkAccessChecks",
    ]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page()
            # Loaded straight from "the rebound name", our own page is refused too.
            assert page.goto(attacker_page).status == 403
            # The attacker's page, as it was served before the name was re-pointed.
            page.route(attacker_page, lambda route: route.fulfill(content_type="text/html", body="<p>hi</p>"))
            page.goto(attacker_page)
            results = page.evaluate(ATTACK % json.dumps(AGENT_BODY))
            # The server's own page at its own address keeps working in the same browser.
            page.goto(live.url + "/")
            own = page.evaluate(
                "async () => (await fetch('/v1/chat/completions', {method: 'POST', "
                "headers: {'Content-Type': 'application/json'}, body: JSON.stringify("
                + json.dumps(CHAT_BODY)
                + ")})).status"
            )
        finally:
            browser.close()
    assert results == {name: [403, "host_not_allowed"] for name in ("models", "health", "agent", "remove")}
    assert own == 200
    assert len(engine.requests) == served_before + 1 and len(app.state.agent.sessions) == sessions_before
