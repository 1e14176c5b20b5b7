"""The ``codeact-server`` command: serve, pull, models, run.

``serve`` flags are generated from ``Settings`` so flags, env vars and help text agree.
Every expected failure (missing or corrupt model, offline pull, port in use) ends with one
line on stderr and a non-zero exit, before any socket is bound — no traceback spew.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from server.cli.bundle import add_bundle_parser, cmd_bundle
from server.cli.errors import EXIT_MODEL, EXIT_RUNTIME, EXIT_USAGE, CLIError, load_engine, load_llama_first
from server.cli.run import add_run_parser, cmd_run
from server.cli.sandbox import add_sandbox_parser, check_sandbox_env, cmd_sandbox
from server.settings import SERVE_FLAGS, Settings

log = logging.getLogger("codeact_server")


def _is_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return bool in typing.get_args(annotation)
    return False


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def add_settings_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """One ``--flag`` per settings field, help text from the field's description.

    A list field takes the flag once per value (``--api-key A --api-key B``).
    """
    for name in names:
        field = Settings.model_fields[name]
        flag = "--" + name.replace("_", "-")
        env = f"CODEACT_{name.upper()}"
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description} [env {env}; default: {default}]"
        if _is_bool(field.annotation):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif _is_list(field.annotation):
            parser.add_argument(flag, dest=name, action="append", default=None, metavar="VALUE", help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {name: value for name in SERVE_FLAGS if (value := getattr(args, name, None)) is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CLIError(f"invalid setting {where}: {first['msg']}", EXIT_USAGE) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeact-server",
        description="Local, offline CodeAct agent server: a GGUF model on llama.cpp, a "
        "sandboxed Python executor, and an OpenAI-compatible HTTP API with /v1/agent.",
        epilog="Run `codeact-server COMMAND --help` for a command's options. Every serve "
        "option can also be set with a CODEACT_* environment variable.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="load a model and serve the HTTP API",
        description="Load a GGUF model and serve /v1/chat/completions, /v1/agent, /v1/models "
        "and /health. With no options: the best model present locally on 127.0.0.1:8000.",
    )
    add_settings_flags(serve, SERVE_FLAGS)

    pull = sub.add_parser(
        "pull",
        help="download a catalog model into the Hugging Face cache",
        description="Download a catalog model's GGUF with huggingface_hub into the standard "
        "HF cache (HF_HOME), with a progress bar, resuming a partial download, and verify its "
        "sha256. Honours HF_ENDPOINT and HF_HUB_OFFLINE.",
    )
    pull.add_argument("name", help="catalog model name, e.g. codeact-mistral-7b")
    pull.add_argument("--quant", help="quantization, e.g. Q4_K_M (default: the catalog's)")

    sub.add_parser(
        "models",
        help="list catalog models, whether each is present locally, sizes and paths",
        description="List the model catalog: every quant, whether it is on disk, its size and path, and how to get it.",
    )
    add_run_parser(sub)
    add_bundle_parser(sub)
    add_sandbox_parser(sub)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def check_security(settings: Settings) -> None:
    """Refuse an unusable key file, a non-loopback bind with no key, or a malformed
    ``--allowed-host``, before loading anything."""
    from server.api.auth import AuthConfigError, check_bind, load_api_keys
    from server.api.host_guard import configured_names

    try:
        check_bind(settings, load_api_keys(settings))
        configured_names(settings.allowed_host)
    except (AuthConfigError, ValueError) as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc


def check_mcp_config(settings: Settings) -> None:
    """A broken ``--mcp-config`` stops start-up with the server and field it names."""
    if settings.mcp_config is None:
        return
    from server.mcp.config import McpConfigError, load

    try:
        load(settings.mcp_config)
    except McpConfigError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    load_llama_first(settings)  # before anything below imports numpy: see load_first's docstring
    check_security(settings)
    check_mcp_config(settings)
    check_sandbox_env(settings)
    _configure_logging(settings.log_level)
    engine = load_engine(settings)
    import uvicorn

    from server.api.app import create_app
    from server.store import StoreError

    try:
        app = create_app(settings, engine)
    except StoreError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc
    # SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up to the grace
    # period, cancel the rest, then the lifespan closes every session and sandbox worker.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=settings.shutdown_grace,  # type: ignore[arg-type]  # uvicorn accepts a float
    )
    server = uvicorn.Server(config)
    with _requested_stop_is_success():
        server.run()
    return 0 if server.started else EXIT_RUNTIME


@contextlib.contextmanager
def _requested_stop_is_success() -> Iterator[None]:
    """Exit 0 after a SIGINT/SIGTERM shutdown that drained requests and stopped the workers.

    Once the app has shut down, uvicorn raises the signal that stopped it again, through the
    handler that was in place before it started: Python's would turn a clean Ctrl-C into
    KeyboardInterrupt (exit 130) and kill the process with SIGTERM (-15), so service
    managers and ``make serve`` would report a failure for a stop that was asked for and
    done. Quiet handlers in that place make the re-raised signal a no-op. uvicorn replaces
    them with its own as it starts serving, so they only ever see that re-raised signal (and
    one sent in the instant before, which is then ignored: send it again).
    """
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)


def cmd_pull(args: argparse.Namespace) -> int:
    from models.errors import ModelError
    from models.store.pull import pull_model

    try:
        path = pull_model(args.name, args.quant)
    except ModelError as exc:
        raise CLIError(str(exc), EXIT_MODEL) from exc
    print(f"ready: {path}")
    return 0


def cmd_models(_: argparse.Namespace) -> int:
    from models.store.local import list_models

    rows = list_models()
    header = ("MODEL", "QUANT", "PRESENT", "SIZE", "PATH / SOURCE")
    table = [
        (
            r.name,
            r.quant + (" *" if r.is_default else ""),
            "yes" if r.present else "no",
            _human_size(r.size_bytes, exact=r.size_exact),
            str(r.path) if r.path else r.source,
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(4)]
    for row in [header, *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4])
    print("\n* default quant. Get a model with `codeact-server pull NAME [--quant Q]`.")
    return 0


def _human_size(size: int, *, exact: bool) -> str:
    prefix = "" if exact else "~"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{prefix}{size:.0f} {unit}" if unit == "B" else f"{prefix}{size:.2f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return str(size)


COMMANDS = {
    "serve": cmd_serve,
    "pull": cmd_pull,
    "models": cmd_models,
    "run": cmd_run,
    "bundle": cmd_bundle,
    "sandbox": cmd_sandbox,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CLIError as exc:
        print(f"codeact-server: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
