"""Fixtures for the sandbox tests: real workers, at the detected level and the fallback."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sandbox import Limits, Sandbox

#: What each isolation level promises; tests assert exactly these, and skip the rest.
GUARANTEES: dict[str, set[str]] = {
    "namespaces": {"network", "filesystem", "other-sessions", "server-signals", "server-proc", "nproc"},
    "rlimits+uid": {"other-sessions", "server-signals", "server-proc", "nproc"},
    "rlimits-only": set(),
}

FAST = Limits(wall_seconds=5, cpu_seconds=5, memory_mb=512, max_output_bytes=4000,
              max_processes=32, max_file_mb=10, max_workspace_mb=40)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes seconds (still runs in CI)")


def require(sb: Sandbox, guarantee: str) -> None:
    """Skip unless the sandbox's active level promises `guarantee`."""
    if guarantee not in GUARANTEES[sb.isolation]:
        pytest.skip(f"isolation level {sb.isolation!r} does not guarantee {guarantee!r}")


@pytest.fixture(params=["auto", "rlimits"])
def make_sandbox(request: pytest.FixtureRequest) -> Iterator[Callable[..., Sandbox]]:
    """Factory for sandboxes at the best level ('auto') and at the forced fallback."""
    made: list[Sandbox] = []

    def make(limits: Limits = FAST, **kwargs: object) -> Sandbox:
        sb = Sandbox(limits=limits, isolation_level=request.param, **kwargs)  # type: ignore[arg-type]
        made.append(sb)
        return sb

    yield make
    for sb in made:
        sb.close()


@pytest.fixture
def sb(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


def assert_fresh_run_works(sb: Sandbox) -> None:
    result = sb.run("print('still here')")
    assert result.ok, result
    assert result.stdout == "still here\n"
