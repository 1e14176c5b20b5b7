"""The sandbox environment: agent code gets the scientific stack, not the server's packages.

These tests need the environment `make test` creates (`codeact-server sandbox setup`); if it
is missing they fail with the command that makes it, they do not skip: a CodeAct server whose
agent cannot import numpy or save a plot is broken, whatever else passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.engine.scripted import ScriptedEngine
from sandbox import Limits, SandboxPool, environment
from sandbox.errors import SandboxEnvError
from server.api.app import create_app
from server.cli.main import main
from server.settings import Settings
from tests.live_server import LiveServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LIMITS = Limits(wall_seconds=120, cpu_seconds=120, memory_mb=1024)

#: The CodeAct paper's flagship task, as the model would write it.
KMEANS = """
import numpy as np
import matplotlib.pyplot as plt
from sklearn.cluster import KMeans

rng = np.random.default_rng(0)
points = rng.random((100, 2))
kmeans = KMeans(n_clusters=3, n_init=10, random_state=0).fit(points)
plt.scatter(points[:, 0], points[:, 1], c=kmeans.labels_)
plt.scatter(*kmeans.cluster_centers_.T, marker="x", color="red")
plt.savefig("kmeans.png")
print(sorted(np.bincount(kmeans.labels_).tolist()))
"""

REGRESSION = """
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from sklearn.linear_model import LinearRegression

rng = np.random.default_rng(1)
table = pd.DataFrame({"x": rng.uniform(0, 10, 200)})
table["y"] = 3.0 * table["x"] + 2.0 + rng.normal(0, 0.5, len(table))
table.to_csv("table.csv", index=False)
model = LinearRegression().fit(table[["x"]], table["y"])
ax = table.plot.scatter(x="x", y="y")
ax.plot(table["x"], model.predict(table[["x"]]), color="red")
plt.savefig("regression.png")
print(f"{model.coef_[0]:.3f} {model.intercept_:.3f}")
"""


@pytest.fixture(scope="module")
def env_python() -> str:
    """The interpreter agent code runs in, as the server resolves it; fails if it is missing."""
    settings = Settings()
    try:
        python, _ = environment.resolve(settings.sandbox_python, settings.sandbox_env)
    except SandboxEnvError as exc:
        pytest.fail(f"{exc} (`make test` runs `codeact-server sandbox setup` before the tests)")
    return str(python)


@pytest.fixture(scope="module")
def pool(env_python: str) -> Iterator[SandboxPool]:
    with SandboxPool(size=1, limits=LIMITS, python=env_python, preimport=environment.DEFAULT_PREIMPORT) as pool:
        yield pool


def _wait_idle(pool: SandboxPool, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while pool.idle < pool.size:
        assert time.monotonic() < deadline, "the pool did not pre-start a worker"
        time.sleep(0.05)


def _png(path: Path) -> bytes:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000, f"{path} is not a real PNG ({len(data)} bytes)"
    return data


def test_kmeans_flagship_leaves_its_scatter_plot(pool: SandboxPool) -> None:
    with pool.acquire() as sb:
        result = sb.run(KMEANS)
        assert result.ok, result
        sizes = eval(result.stdout)  # noqa: S307 - a list of ints we printed ourselves
        assert len(sizes) == 3 and sum(sizes) == 100 and min(sizes) > 0
        assert result.files == ["kmeans.png"]
        _png(sb.workspace / "kmeans.png")


def test_pandas_sklearn_regression_on_a_generated_table(pool: SandboxPool) -> None:
    with pool.acquire() as sb:
        result = sb.run(REGRESSION)
        assert result.ok, result
        slope, intercept = map(float, result.stdout.split())
        assert abs(slope - 3.0) < 0.1 and abs(intercept - 2.0) < 0.3
        assert result.files == ["regression.png", "table.csv"]
        _png(sb.workspace / "regression.png")


def test_plt_show_saves_a_png_into_the_workspace(pool: SandboxPool) -> None:
    with pool.acquire() as sb:
        result = sb.run("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
        assert result.ok, result
        assert "[figure saved to figure_1.png]" in result.stdout
        assert result.files == ["figure_1.png"]
        _png(sb.workspace / "figure_1.png")


def test_agent_code_cannot_import_the_servers_packages(env_python: str, level: str) -> None:
    """At every isolation level (`level` from conftest.py: fails where a level must work here)."""
    pool = SandboxPool(size=0, limits=LIMITS, python=env_python, isolation_level=level)  # type: ignore[arg-type]
    with pool, pool.acquire() as sb:
        probe = sb.run(
            "import importlib.util, sys\n"
            f"print(sys.executable)\nprint([m for m in {environment.SERVER_ONLY!r} "
            "if importlib.util.find_spec(m) is not None])"
        )
        assert probe.ok, probe
        assert probe.stdout.splitlines() == [env_python, "[]"]
        for module in ("fastapi", "llama_cpp", "server", "models"):
            result = sb.run(f"import {module}")
            assert result.error and f"ModuleNotFoundError: No module named '{module}'" in result.error
        assert sb.run("import numpy, pandas, scipy, sklearn, matplotlib").ok
        shown = sb.run("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()")
        assert shown.ok and shown.files == ["figure_1.png"], shown
        _png(sb.workspace / "figure_1.png")


def test_pooled_workers_start_with_the_stack_imported(pool: SandboxPool) -> None:
    _wait_idle(pool)
    with pool.acquire() as sb:
        result = sb.run(f"import sys\nprint(all(m in sys.modules for m in {environment.DEFAULT_PREIMPORT!r}))")
        assert result.stdout == "True\n", result
    with SandboxPool(size=1, limits=LIMITS, python=pool.python, preimport=()) as bare:
        _wait_idle(bare)
        with bare.acquire() as sb:
            assert sb.run("import sys\nprint('pandas' in sys.modules)").stdout == "False\n"


def test_no_preimport_under_a_tight_memory_limit(env_python: str) -> None:
    """The stack's ~280 MiB of address space would leave a 512 MiB session too little."""
    tight = Limits(wall_seconds=60, cpu_seconds=60, memory_mb=512)
    with SandboxPool(size=1, limits=tight, python=env_python, preimport=environment.DEFAULT_PREIMPORT) as pool:
        _wait_idle(pool)
        with pool.acquire() as sb:
            assert sb.run("import sys\nprint('pandas' in sys.modules)").stdout == "False\n"
            assert sb.run("import numpy as np\nprint(np.ones(3).sum())").stdout == "3.0\n"


def test_a_preimport_that_fails_does_not_cost_the_worker(env_python: str) -> None:
    with SandboxPool(size=1, limits=LIMITS, python=env_python, preimport=["numpy", "no_such_module_x"]) as pool:
        _wait_idle(pool)
        with pool.acquire() as sb:
            result = sb.run("import sys\nprint('numpy' in sys.modules, 'no_such_module_x' in sys.modules)")
            assert result.stdout == "True False\n", result


def test_the_requirements_list_the_stack_codeact_tasks_use() -> None:
    names = set(environment.requirement_names())
    assert {"numpy", "pandas", "scipy", "matplotlib", "scikit-learn", "RestrictedPython"} <= names
    assert environment.REQUIREMENTS.is_file()


@pytest.fixture(scope="module")
def env_dir() -> Path:
    """The managed environment's directory (the one `make test` set up)."""
    env_dir = Settings().sandbox_env
    try:
        environment.resolve(None, env_dir)
    except SandboxEnvError as exc:
        pytest.fail(f"{exc} (`make test` runs `codeact-server sandbox setup` before the tests)")
    return env_dir


def test_setup_of_an_up_to_date_env_does_nothing(env_dir: Path) -> None:
    said: list[str] = []
    info = environment.setup(env_dir, say=said.append)
    assert said == [f"sandbox environment up to date: {env_dir.absolute()}"]
    assert not info.missing and info.server_importable == [] and info.managed


def test_a_failed_setup_keeps_a_working_env(env_dir: Path, tmp_path: Path) -> None:
    """An extra requirement pip cannot find (offline: an empty wheels folder) fails in one line
    and leaves the environment usable, stamp included."""
    extra = tmp_path / "extra.txt"
    extra.write_text("no-such-package-for-codeact-tests==1.0\n")
    with pytest.raises(SandboxEnvError, match="could not install the sandbox packages"):
        environment.setup(env_dir, requirements=[extra], wheels_dir=tmp_path, say=lambda _: None)
    python, managed = environment.resolve(None, env_dir)
    assert managed and environment.inspect(python, managed=True).missing == []


def test_a_missing_or_unfinished_env_is_an_error_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SandboxEnvError, match=r"missing .* `codeact-server sandbox setup --sandbox-env "):
        environment.resolve(None, tmp_path / "env")
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "python").symlink_to("/bin/true")
    with pytest.raises(SandboxEnvError, match="incomplete"):
        environment.resolve(None, tmp_path / "env")
    with pytest.raises(SandboxEnvError, match="not an executable"):
        environment.resolve(tmp_path / "nope", tmp_path / "env")


def test_serve_without_the_env_stops_before_loading_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--sandbox-env", str(tmp_path / "env"), "--model", str(tmp_path / "absent.gguf")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "sandbox environment is missing" in err and "sandbox setup" in err


def test_health_shows_the_env_and_the_flagship_plot_downloads(env_python: str) -> None:
    engine = ScriptedEngine()
    settings = Settings(sandbox_pool_size=1, execution_timeout=120)
    with LiveServer(create_app(settings, engine)) as live:
        health = httpx.get(live.url + "/health").json()["sandbox_env"]
        assert health["python"] == env_python and health["managed"] is True
        assert health["stack_present"] is True and health["server_importable"] == []
        assert health["packages"]["scikit-learn"] and health["packages"]["matplotlib"]
        engine.enqueue(f"Cluster them.\n<execute>{KMEANS}</execute>", "<solution>saved kmeans.png</solution>")
        body = {"model": "scripted", "messages": [{"role": "user", "content": "k-means on 100 points"}]}
        reply = httpx.post(live.url + "/v1/agent", json=body, timeout=180).json()["agent"]
        observation = reply["steps"][0]["observation"]
        assert observation["error"] is None and "kmeans.png" in observation["files"], observation
        png = httpx.get(f"{live.url}/v1/agent/sessions/{reply['session_id']}/files/kmeans.png")
        assert png.status_code == 200 and png.content[:8] == PNG_MAGIC
