"""The ``codeact-server`` command as a user runs it: real subprocesses, real files, real HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from benchmarks.servers import free_port
from models.store.catalog import CATALOG
from tests.conftest import embedded_model_path
from tests.models.conftest import FakeHub, write_tiny_gguf

CLI = [sys.executable, "-m", "server.cli.main"]
ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("codeact-server: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_help_explains_every_command_and_flag() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("serve", "pull", "models", "run"):
        assert command in top.stdout
    serve = run_cli("serve", "--help").stdout
    for flag in ("--model", "--host", "--port", "--n-gpu-layers", "--ctx-size", "--threads", "--max-queue"):
        assert flag in serve
    assert "CODEACT_N_GPU_LAYERS" in serve
    assert "--quant" in run_cli("pull", "--help").stdout
    assert "--server" in run_cli("run", "--help").stdout


def test_invalid_setting_is_a_one_line_usage_error() -> None:
    assert_one_line_error(run_cli("serve", "--port", "not-a-port"), "port")


@pytest.mark.parametrize("damage", ["missing", "not_gguf", "truncated"])
def test_broken_model_file_fails_startup_cleanly(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "model.gguf"
    if damage == "not_gguf":
        path.write_bytes(b"this is not a model\n" * 100)
    elif damage == "truncated":
        with embedded_model_path().open("rb") as source:
            path.write_bytes(source.read(5_000_000))
    result = run_cli("serve", "--model", str(path), "--port", "0")
    assert_one_line_error(result, str(path))


def test_models_lists_the_catalog_and_the_embedded_model() -> None:
    result = run_cli("models")
    assert result.returncode == 0
    rows = result.stdout.splitlines()
    smol = next(r for r in rows if r.startswith("smollm2-135m"))
    assert " yes " in smol and str(embedded_model_path()) in smol
    assert any(r.startswith("codeact-mistral-7b") and "Q4_K_M *" in r for r in rows)


def _pull_env(hub: FakeHub, home: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0"}


def test_pull_from_a_fake_hub_verifies_the_checksum(tmp_path: Path) -> None:
    _, quant = CATALOG["codeact-mistral-7b"].quant_file("Q4_K_S")
    content = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    with FakeHub() as hub:
        hub.add(quant.repo_id, quant.filename, content)
        result = run_cli("pull", "codeact-mistral-7b", "--quant", "Q4_K_S", env=_pull_env(hub, tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    pulled = Path(result.stdout.strip().splitlines()[-1].removeprefix("ready: "))
    assert pulled.read_bytes() == content
    assert str(tmp_path / "hf") in str(pulled)
    listing = run_cli("models", env={"HF_HOME": str(tmp_path / "hf")}).stdout
    assert any("Q4_K_S" in r and " yes " in r for r in listing.splitlines())


def test_pull_with_a_bad_checksum_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    _, quant = CATALOG["codeact-mistral-7b"].quant_file()
    content = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    with FakeHub() as hub:
        served = hub.add(quant.repo_id, quant.filename, content)
        served.serve_content = content[:-10] + b"corrupted!"
        result = run_cli("pull", "codeact-mistral-7b", env=_pull_env(hub, tmp_path / "hf"))
    assert_one_line_error(result, "sha256")
    leftovers = [p for p in (tmp_path / "hf").rglob("*") if p.is_file() and p.stat().st_size > 1000]
    assert leftovers == []


def test_pull_offline_says_how_to_proceed(tmp_path: Path) -> None:
    result = run_cli("pull", "codeact-mistral-7b", env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert_one_line_error(result, "offline")


@pytest.mark.model
def test_serve_starts_on_the_embedded_model_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HF_HOME": str(tmp_path), "CODEACT_SANDBOX_POOL_SIZE": "0"}
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--ctx-size", "1024"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                health = httpx.get(url + "/health").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        assert health["model"] == "smollm2-135m" and health["backend"] == "cpu"
        with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
            stream = client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    # uvicorn drains, shuts the app down (sandboxes, engine), then re-raises SIGTERM.
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "smollm2-135m" in output and "codeact-server pull codeact-mistral-7b" in output


def test_make_and_ci_run_the_same_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make serve" in readme
    assert shutil.which("make") is not None
