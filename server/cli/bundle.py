"""``codeact-server bundle export|import``: carry a model (and the wheels) to an air-gapped machine.

Kept out of cli.py so that file stays about serving; cli.py only calls
``add_bundle_parser(sub)`` and maps ``"bundle"`` to ``cmd_bundle``. The work is in
``models.store.bundle`` (archive, verification, store layout) and ``models.store.bundle_wheels``
(what pip fetches); this module parses flags and turns ``ModelError`` into one line.
When a bundle carries the sandbox stack's wheels, ``import`` also makes the sandbox
environment from them (``sandbox.environment.setup``, offline): after an air-gapped import
agent code has numpy, pandas, matplotlib and scikit-learn, as after ``make serve``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

__all__ = ["add_bundle_parser", "cmd_bundle"]


def add_bundle_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``bundle`` with its ``export`` and ``import`` subcommands to ``sub``."""
    bundle = sub.add_parser(
        "bundle",
        help="export a model (and optionally wheels) to one file, or import such a file offline",
        description="Move a model to a machine without network: `export` writes one tar file "
        "(the GGUF, a manifest with sha256 and sizes, optionally the wheels to install the "
        "server); `import` verifies every checksum and installs the model into the local "
        "Hugging Face cache (HF_HOME) without any network access.",
    )
    actions = bundle.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    export = actions.add_parser(
        "export",
        help="write NAME's GGUF and a manifest into one archive",
        description="Write a catalog model that is present locally (see `codeact-server models`) "
        "into one tar archive with a manifest of sha256 checksums. With --with-wheels, also "
        "download (with pip, needs the network) everything needed to install the server and "
        "the sandbox environment's packages on PLATFORM: e.g. linux-x86_64, linux-aarch64, "
        "macos-arm64, or any pip platform tag.",
    )
    export.add_argument("name", metavar="NAME", help="catalog model name, e.g. codeact-mistral-7b")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="archive to write, e.g. model.bundle.tar")
    export.add_argument("--quant", help="quantization, e.g. Q4_K_M (default: the catalog's)")
    export.add_argument("--with-wheels", metavar="PLATFORM", help="also carry the wheels for PLATFORM")
    export.add_argument(
        "--python-version", metavar="X.Y", help="target Python for --with-wheels (default: this interpreter's)"
    )
    export.add_argument("--no-progress", action="store_true", help="no progress bars")

    imp = actions.add_parser(
        "import",
        help="verify an archive and install its model into the local store (no network)",
        description="Verify every member of a bundle against its manifest (sha256 and size) and "
        "install the model into the local Hugging Face cache (HF_HOME / HF_HUB_CACHE) so that "
        "`serve --model NAME` finds it. A truncated or modified bundle is refused and nothing "
        "is installed. Never uses the network.",
    )
    imp.add_argument("file", metavar="FILE", help="the bundle archive")
    imp.add_argument("--wheels-dir", metavar="DIR", help="also copy the bundle's verified wheels into DIR")
    imp.add_argument(
        "--no-sandbox-env",
        action="store_true",
        help="do not set up the sandbox environment from the bundle's wheels (done by default "
        "when it carries them; `codeact-server sandbox setup --wheels-dir DIR` does it later)",
    )
    imp.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_bundle(args: argparse.Namespace) -> int:
    """Run ``bundle export`` or ``bundle import``; expected failures raise CLIError (one line)."""
    from models.errors import ModelError
    from server.cli.errors import EXIT_MODEL, CLIError

    try:
        if args.bundle_command == "export":
            return _export(args)
        return _import(args)
    except ModelError as exc:
        raise CLIError(str(exc), EXIT_MODEL) from exc


def _export(args: argparse.Namespace) -> int:
    from models.store.bundle import export_bundle
    from models.store.bundle_wheels import collect_wheels
    from sandbox.environment import REQUIREMENTS as SANDBOX_REQUIREMENTS

    out = Path(args.output)
    with tempfile.TemporaryDirectory(prefix="codeact-wheels-") as tmp:
        wheels_dir, wheels_info = None, None
        if args.with_wheels:
            print(f"fetching wheels for {args.with_wheels} with pip (needs the network)...")
            wheels_dir = Path(tmp)
            wheels_info = collect_wheels(
                args.with_wheels,
                wheels_dir,
                python_version=args.python_version,
                extra_requirements=[SANDBOX_REQUIREMENTS],
            )
        export_bundle(
            args.name,
            out,
            quant=args.quant,
            wheels_dir=wheels_dir,
            wheels_info=wheels_info,
            progress=not args.no_progress,
        )
    print(f"wrote {out} ({out.stat().st_size / 1e9:.2f} GB); on the other machine: codeact-server bundle import {out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from models.store.bundle import import_bundle, read_manifest

    carried = read_manifest(Path(args.file)).get("wheels") or {}
    sandbox = bool(carried.get("sandbox_setup")) and not args.no_sandbox_env
    if sandbox:
        _check_python_version(str(carried.get("python_version", "")))
    with tempfile.TemporaryDirectory(prefix="codeact-wheels-") as tmp:
        wheels_out = Path(args.wheels_dir) if args.wheels_dir else Path(tmp) if sandbox else None
        result = import_bundle(Path(args.file), wheels_out=wheels_out, progress=not args.no_progress)
        print(result.message)
        if result.wheels and args.wheels_dir:
            print(f"{result.wheels} verified wheel files in {args.wheels_dir}")
        if sandbox and wheels_out is not None:
            _setup_sandbox_env(wheels_out)
    return 0


def _check_python_version(wanted: str) -> None:
    """The sandbox venv is made from this interpreter: the wheels must be for its Python."""
    import sys

    from server.cli.errors import EXIT_USAGE, CLIError

    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and wanted != have:
        raise CLIError(
            f"the bundle's wheels are for Python {wanted}, this is Python {have}: run the import with "
            f"a Python {wanted} codeact-server, or pass --no-sandbox-env and set the sandbox up otherwise",
            EXIT_USAGE,
        )


def _setup_sandbox_env(wheels: Path) -> None:
    from sandbox import environment
    from sandbox.errors import SandboxEnvError
    from server.cli.errors import EXIT_RUNTIME, CLIError
    from server.settings import Settings

    try:
        environment.setup(Settings().sandbox_env, wheels_dir=wheels)
    except SandboxEnvError as exc:
        raise CLIError(f"the model was imported, but not the sandbox environment: {exc}", EXIT_RUNTIME) from exc
