"""``codeact-server sandbox setup|info``: the Python environment agent code runs in.

Kept out of cli.py so that file stays about serving; cli.py only calls
``add_sandbox_parser(sub)`` and maps ``"sandbox"`` to ``cmd_sandbox``. The work is in
``sandbox.environment`` (where the venv lives, what it holds, how it is made); this module
parses flags and turns ``SandboxEnvError`` into one line. ``check_sandbox_env`` is what
``serve`` runs before loading a model, so a missing environment fails in a second with the
command that fixes it, not after the model has loaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from server.cli.errors import EXIT_RUNTIME, EXIT_USAGE, CLIError

if TYPE_CHECKING:
    from server.settings import Settings

__all__ = ["add_sandbox_parser", "check_sandbox_env", "cmd_sandbox"]


def add_sandbox_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``sandbox`` with its ``setup`` and ``info`` subcommands to ``sub``."""
    from sandbox.environment import REQUIREMENTS, default_env_dir

    sandbox = sub.add_parser(
        "sandbox",
        help="set up or inspect the Python environment agent code runs in",
        description="Agent code runs in its own Python environment (a venv), apart from the "
        "server's packages, with the scientific stack CodeAct tasks use. `setup` creates or "
        f"updates it ({REQUIREMENTS.name}, plus any --requirements); `info` shows what it holds.",
    )
    actions = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    env_help = f"the environment's directory [env CODEACT_SANDBOX_ENV; default: {default_env_dir()}]"

    setup = actions.add_parser(
        "setup",
        help="create or update the sandbox environment (pip, needs the network unless --wheels-dir)",
        description="Create the sandbox venv if it is missing and install the sandbox stack "
        f"(numpy, pandas, scipy, matplotlib, scikit-learn, ...: {REQUIREMENTS}) plus every "
        "--requirements FILE. Does nothing when all of them are installed already. Packages "
        "added this way stay until --clear.",
    )
    setup.add_argument("--sandbox-env", type=Path, metavar="DIR", help=env_help)
    setup.add_argument(
        "--requirements",
        "-r",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also install this pip requirements file (repeatable)",
    )
    setup.add_argument(
        "--wheels-dir",
        type=Path,
        metavar="DIR",
        help="install offline from these wheels only (e.g. a bundle's), never the network",
    )
    setup.add_argument(
        "--python", metavar="PATH", help="base interpreter to create the venv with (default: the server's)"
    )
    setup.add_argument("--clear", action="store_true", help="delete the environment's packages and start over")

    info = actions.add_parser(
        "info",
        help="show the interpreter, its version and its packages",
        description="Show the interpreter agent code would run in, as /health does.",
    )
    info.add_argument("--sandbox-env", type=Path, metavar="DIR", help=env_help)
    info.add_argument(
        "--sandbox-python",
        type=Path,
        metavar="PATH",
        help="inspect this interpreter instead [env CODEACT_SANDBOX_PYTHON]",
    )
    info.add_argument("--json", action="store_true", help="print JSON")


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run ``sandbox setup`` or ``sandbox info``; expected failures raise CLIError (one line)."""
    from sandbox import environment
    from sandbox.errors import SandboxEnvError
    from server.settings import Settings

    settings = Settings()
    env_dir = args.sandbox_env or settings.sandbox_env
    try:
        if args.sandbox_command == "setup":
            environment.setup(
                env_dir,
                requirements=args.requirements,
                wheels_dir=args.wheels_dir,
                base_python=args.python,
                clear=args.clear,
            )
            return 0
        python, managed = environment.resolve(args.sandbox_python or settings.sandbox_python, env_dir)
        info = environment.inspect(python, managed=managed)
    except SandboxEnvError as exc:
        raise CLIError(str(exc), EXIT_RUNTIME) from exc
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
        return 0
    print(f"interpreter: {info.python} (Python {info.version}, {'managed' if managed else 'given'})")
    print(f"prefix:      {info.prefix}")
    for name, version in info.packages.items():
        print(f"  {name:<20} {version or 'MISSING'}")
    if info.server_importable:
        print(f"warning: agent code can import server packages here: {', '.join(info.server_importable)}")
    return 0


def check_sandbox_env(settings: Settings) -> None:
    """Fail before the model loads when agent code would have no interpreter, or not the
    isolation level ``--sandbox-isolation`` demands (one line, the fix)."""
    from sandbox import environment
    from sandbox.confine import isolation
    from sandbox.errors import SandboxEnvError

    try:
        python, _ = environment.resolve(settings.sandbox_python, settings.sandbox_env)
    except SandboxEnvError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc
    if settings.sandbox_isolation == "auto":
        return  # never refused: the pool logs what it fell back to, once logging is set up
    try:
        isolation.detect(settings.sandbox_isolation, str(python))  # probed once, cached
    except isolation.IsolationUnavailable as exc:
        raise CLIError(f"{exc}; --sandbox-isolation auto accepts the strongest level available", EXIT_USAGE) from exc
