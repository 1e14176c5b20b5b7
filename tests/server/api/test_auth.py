"""API keys over real HTTP (uvicorn, httpx, the openai client), CORS, and the bind check."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.api.auth import AuthConfigError, check_bind, is_loopback, load_api_keys
from server.cli.main import build_parser, settings_from_args
from server.settings import Settings
from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[3]
KEYS = ["key-one", "key-two"]


def serve(settings: Settings) -> LiveServer:
    return LiveServer(create_app(settings, ScriptedEngine(["<solution>ok</solution>"])))


@pytest.fixture(scope="module")
def secured() -> Iterator[LiveServer]:
    with serve(Settings(api_key=KEYS, sandbox_pool_size=0)) as live:
        yield live


def test_health_stays_open_and_the_api_needs_a_key(secured: LiveServer) -> None:
    assert httpx.get(secured.url + "/health").status_code == 200
    for path in ("/v1/models", "/metrics", "/v1/agent/sessions/x", "/docs"):
        response = httpx.get(secured.url + path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
        error = response.json()["error"]
        assert error["code"] == "invalid_api_key" and "Authorization: Bearer" in error["message"]
        assert set(error) == {"message", "type", "param", "code"}


def test_wrong_key_and_wrong_scheme_are_refused(secured: LiveServer) -> None:
    for header in ("Bearer key-three", "Bearer key-on", "Basic a2V5LW9uZQ==", "key-one"):
        response = httpx.get(secured.url + "/v1/models", headers={"Authorization": header})
        assert response.status_code == 401, header
    bad = httpx.get(secured.url + "/v1/models", headers={"Authorization": "Bearer nope"})
    assert bad.json()["error"]["message"] == "invalid API key"
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]


def test_every_configured_key_works_with_the_openai_client(secured: LiveServer) -> None:
    for key in KEYS:
        with openai.OpenAI(base_url=secured.url + "/v1", api_key=key, max_retries=0) as client:
            assert client.models.list().data[0].id == "scripted"
    with (
        openai.OpenAI(base_url=secured.url + "/v1", api_key="stolen", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}])
    response = httpx.get(secured.url + "/metrics", headers={"Authorization": "bearer key-two"})
    assert response.status_code == 200


def test_the_web_page_is_open_so_it_can_ask_for_the_key(secured: LiveServer) -> None:
    assert httpx.get(secured.url + "/").status_code != 401
    assert httpx.get(secured.url + "/static/missing.js").status_code != 401


def test_keys_from_a_file_and_no_auth_without_keys(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated 2024-05\nfile-key\n\n  other-key  \n")
    settings = Settings(api_key_file=key_file, sandbox_pool_size=0)
    assert load_api_keys(settings) == ("file-key", "other-key")
    with serve(settings) as live:
        assert httpx.get(live.url + "/v1/models").status_code == 401
        ok = httpx.get(live.url + "/v1/models", headers={"Authorization": "Bearer other-key"})
        assert ok.status_code == 200
    with serve(Settings(sandbox_pool_size=0)) as open_server:
        assert httpx.get(open_server.url + "/v1/models").status_code == 200


def test_unusable_key_file_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_api_keys(Settings(api_key_file=tmp_path / "absent"))
    (tmp_path / "empty").write_text("# nothing here\n\n")
    with pytest.raises(AuthConfigError, match="holds no key"):
        load_api_keys(Settings(api_key_file=tmp_path / "empty"))


def test_keys_from_repeated_flags_and_a_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["serve", "--api-key", "a", "--api-key", "b", "--cors-origin", "https://x"])
    settings = settings_from_args(args)
    assert settings.api_key == ["a", "b"] and settings.cors_origin == ["https://x"]
    monkeypatch.setenv("CODEACT_API_KEY", "k1, k2,")
    assert Settings().api_key == ["k1", "k2"]


def test_cors_is_off_by_default_and_on_for_listed_origins() -> None:
    preflight = {
        "Origin": "https://ui.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with serve(Settings(sandbox_pool_size=0)) as live:
        response = httpx.options(live.url + "/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        response = httpx.get(live.url + "/v1/models", headers={"Origin": "https://ui.example"})
        assert "access-control-allow-origin" not in response.headers
    with serve(Settings(cors_origin=["https://ui.example"], api_key=KEYS, sandbox_pool_size=0)) as live:
        response = httpx.options(live.url + "/v1/chat/completions", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://ui.example"
        # A refused request still carries the CORS header, so the page can read the 401.
        refused = httpx.get(live.url + "/v1/models", headers={"Origin": "https://ui.example"})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://ui.example"
        other = httpx.options(live.url + "/v1/models", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("my-host.lan", False),
    ],
)
def test_only_loopback_addresses_may_go_without_a_key(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    settings = Settings(host=host)
    if loopback:
        check_bind(settings, [])
    else:
        with pytest.raises(AuthConfigError, match="--insecure-no-auth"):
            check_bind(settings, [])
    check_bind(settings, ["a-key"])
    check_bind(Settings(host=host, insecure_no_auth=True), [])


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CODEACT_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **(env or {})},
    )


def test_serve_refuses_a_public_address_without_a_key_before_loading_anything(tmp_path: Path) -> None:
    model = str(tmp_path / "never-loaded.gguf")  # the check comes before the model is touched
    started = time.monotonic()
    result = run_serve("--host", "0.0.0.0", "--port", "0", "--model", model)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("codeact-server: error: refusing to serve on 0.0.0.0")
    assert "Traceback" not in result.stderr and time.monotonic() - started < 30
    # With a key, or with the explicit opt-out, the check passes and the model is next.
    for extra, env in (
        (["--insecure-no-auth"], None),
        ([], {"CODEACT_API_KEY": "k"}),
    ):
        result = run_serve("--host", "0.0.0.0", "--port", "0", "--model", model, *extra, env=env)
        assert result.returncode == 3, result.stderr  # EXIT_MODEL: the missing model file
        assert model in result.stderr
    result = run_serve("--api-key-file", str(tmp_path / "absent"), "--model", model)
    assert result.returncode == 2 and "cannot read the API key file" in result.stderr
