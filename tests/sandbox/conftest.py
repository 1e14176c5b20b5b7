"""Fixtures for the sandbox tests: real workers at every isolation level this machine offers.

Which levels must work is stated, not guessed from what happens to work:
``CODEACT_TEST_EXPECT_ISOLATION`` names the level `auto` must reach (``make test`` sets it
to ``strongest``, which is also the default). ``strongest`` means: ``namespaces`` when
bubblewrap is installed, else ``landlock`` when the kernel has Landlock ABI 6+, else
``rlimits-only``. A level at or below the expected one whose prerequisite is present here
(bubblewrap installed, Landlock in the kernel) must work: when its probe fails the tests
*fail* with the probe's reason instead of skipping. Only a level this machine cannot have
(no bubblewrap, an old kernel, above the stated expectation) is skipped, with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from sandbox import Limits, Sandbox
from sandbox.confine import isolation, landlock

EXPECT_ENV = "CODEACT_TEST_EXPECT_ISOLATION"

FAST = Limits(
    wall_seconds=5,
    cpu_seconds=5,
    memory_mb=512,
    max_output_bytes=4000,
    max_processes=32,
    max_file_mb=10,
    max_workspace_mb=40,
)
#: What tests that drive a bare worker process (no Sandbox around it) configure it with.
WORKER_LIMITS = Limits(
    cpu_seconds=5, memory_mb=512, max_output_bytes=4000, max_processes=16, max_file_mb=5, max_open_files=64
)


def _prerequisite(level: isolation.Level) -> bool:
    """Whether what `level` needs is installed here (not whether it works: that is tested)."""
    if level == "namespaces":
        return shutil.which("bwrap") is not None
    if level == "landlock":
        return landlock.abi_version() >= landlock.MIN_ABI
    # rlimits+uid depends on where the interpreter lives: never demanded by default.
    return level == "rlimits-only"


def _expected() -> isolation.Level:
    value = os.environ.get(EXPECT_ENV, "strongest")
    if value == "strongest":
        return next(level for level in isolation.LEVELS if _prerequisite(level))
    if value not in isolation.LEVELS:
        raise pytest.UsageError(f"{EXPECT_ENV}={value!r}: one of strongest, {', '.join(isolation.LEVELS)}")
    return value  # type: ignore[return-value]


#: The level `auto` must reach on this machine.
EXPECTED: isolation.Level = _expected()


def required(level: isolation.Level) -> bool:
    """Whether `level` must work here (see the module docstring)."""
    rank = isolation.LEVELS.index
    return level == EXPECTED or (rank(level) > rank(EXPECTED) and _prerequisite(level))


def need_level(requested: isolation.Requested, python: str | None = None) -> None:
    """Fail if the `requested` level must work here and does not; skip if it cannot."""
    if requested == "rlimits" or requested == "auto":
        return
    reason = isolation.problem(requested, python)
    if reason is None:
        return
    if required(requested):
        pytest.fail(
            f"isolation level {requested!r} is expected on this machine "
            f"({EXPECT_ENV}={os.environ.get(EXPECT_ENV, 'strongest')}) but: {reason}"
        )
    pytest.skip(f"this machine does not offer {requested!r}: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes seconds (still runs in CI)")


def require(sb: Sandbox, guarantee: str) -> None:
    """Skip unless the sandbox's level promises `guarantee` (each is tested at every level
    that promises it: the level fixtures never skip a level the machine must offer)."""
    if guarantee not in isolation.guarantees(sb.isolation, sb._uid):  # type: ignore[arg-type]
        pytest.skip(f"isolation level {sb.isolation!r} does not promise {guarantee!r}")


#: Every level a test can ask for; `rlimits` is the fallback below the kernel features.
LEVEL_PARAMS = ["namespaces", "landlock", "rlimits"]


@pytest.fixture(params=LEVEL_PARAMS)
def level(request: pytest.FixtureRequest) -> isolation.Requested:
    need_level(request.param)
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_sandbox(level: isolation.Requested) -> Iterator[Callable[..., Sandbox]]:
    """Factory for sandboxes at one explicitly requested level (every level in turn)."""
    made: list[Sandbox] = []

    def make(limits: Limits = FAST, **kwargs: object) -> Sandbox:
        sb = Sandbox(limits=limits, isolation_level=level, **kwargs)  # type: ignore[arg-type]
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
