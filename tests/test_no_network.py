"""`serve` makes no network call at all: no telemetry, no hub look-ups, no DNS.

Two independent proofs in one run:

1. The server runs in a fresh network namespace whose only interface is loopback
   (``unshare --net``, then ``ip link set lo up``), with ``HF_HUB_OFFLINE`` *unset* and an
   empty ``HF_HOME``, and still starts (``--model auto``, so the catalog and hub-cache
   look-ups run), answers a chat completion and runs an agent request from a client
   inside the same namespace. Anything that needed the network would fail or hang there.
2. The whole process tree runs under ``strace -f --seccomp-bpf`` recording ``connect``
   (DNS, HTTP and telemetry clients all connect; tracing ``sendto`` too would stop the
   event loop's per-token wake-ups for nothing); every address must be loopback, a Unix
   socket or netlink. A namespace alone would not show a look-up that failed quietly and
   was shrugged off; the trace does.
   A positive control (a deliberate connect to 192.0.2.1 under the same tracer) proves
   the check would catch one.

Needs root (or unprivileged user namespaces), util-linux ``unshare``, iproute2 ``ip`` and
``strace``; skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PORT = 8765  # a fresh namespace has no other listeners, so any fixed port is free

# Runs inside the namespace: start the traced server, talk to it, stop it, report JSON.
DRIVER = r"""
import json, os, signal, subprocess, sys, time
import httpx, psutil

port, trace, control_trace = sys.argv[1], sys.argv[2], sys.argv[3]
strace = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect"]
env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))}
env["CODEACT_SANDBOX_POOL_SIZE"] = "0"
tracer = subprocess.Popen(
    [*strace, "-o", trace, sys.executable, "-m", "server.cli.main", "serve", "--model", "auto",
     "--port", port, "--ctx-size", "1024"],
    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
)
out = {}
url = f"http://127.0.0.1:{port}"
try:
    deadline = time.monotonic() + 90
    while True:
        if tracer.poll() is not None:
            raise SystemExit("server exited: " + tracer.stdout.read())
        try:
            out["health"] = httpx.get(url + "/health", timeout=5).json()
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("server did not come up")
            time.sleep(0.2)
    chat = httpx.post(url + "/v1/chat/completions", timeout=120, json={
        "model": "smollm2-135m", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8})
    out["chat"] = [chat.status_code, chat.json()]
    agent = httpx.post(url + "/v1/agent", timeout=180, json={
        "model": "smollm2-135m", "max_turns": 1, "max_tokens": 16,
        "messages": [{"role": "user", "content": "Print 2 + 2 with Python."}]})
    out["agent"] = [agent.status_code, agent.json()]
finally:
    for child in psutil.Process(tracer.pid).children():
        child.send_signal(signal.SIGTERM)
    try:
        tracer.wait(timeout=60)
    except subprocess.TimeoutExpired:
        tracer.kill()
subprocess.run([*strace, "-o", control_trace, sys.executable, "-c",
    "import socket; s = socket.socket(); s.settimeout(1)\n"
    "try: s.connect(('192.0.2.1', 80))\nexcept OSError: pass"], check=False)
print("RESULT " + json.dumps(out))
"""

_INET = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_FAMILY = re.compile(r"sa_family=(AF_[A-Z0-9]+)")
_ALLOWED_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNSPEC"}


def non_loopback_calls(trace: str) -> list[str]:
    """strace lines whose socket address is not loopback or local (Unix, netlink)."""
    bad = []
    for line in trace.splitlines():
        families = set(_FAMILY.findall(line))
        v4 = _INET.findall(line)
        v6 = _INET6.findall(line)
        if (
            families - _ALLOWED_FAMILIES
            or any(not a.startswith("127.") for a in v4)
            or any(a not in ("::1", "::ffff:127.0.0.1") for a in v6)
        ):
            bad.append(line)
    return bad


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux-only"
    for tool in ("unshare", "ip", "strace"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install util-linux iproute2 strace)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.strip() or probe.returncode}"
    return None


@pytest.mark.model
@pytest.mark.slow
def test_serve_works_with_no_network_and_connects_nowhere(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    trace, control = tmp_path / "serve.strace", tmp_path / "control.strace"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "CODEACT_"))}
    env |= {"HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT)}
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    script = 'ip link set lo up && exec "$0" "$@"'
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, sys.executable, str(driver), str(PORT), str(trace), str(control)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env=env,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))

    assert out["health"]["model"] == "smollm2-135m"
    status, chat = out["chat"]
    assert status == 200 and chat["choices"][0]["message"]["content"] is not None
    status, agent = out["agent"]
    assert status == 200, agent
    assert agent["agent"]["turns"] >= 1 and agent["agent"]["steps"]

    traced = trace.read_text()
    assert traced.strip(), "strace recorded nothing: the tracer did not run"
    assert non_loopback_calls(traced) == []
    assert any("192.0.2.1" in line for line in non_loopback_calls(control.read_text())), "positive control failed"
