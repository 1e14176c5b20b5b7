"""The ``codeact-server`` command: serve, pull, models, run.

``serve`` flags are generated from ``Settings`` so flags, env vars and help text agree.
Every expected failure (missing or corrupt model, offline pull, port in use) ends with one
line on stderr and a non-zero exit, before any socket is bound — no traceback spew.
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from server.cli_run import add_run_parser, cmd_run
from server.settings import SERVE_FLAGS, Settings

log = logging.getLogger("codeact_server")

EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_RUNTIME = 1


class CLIError(Exception):
    """An expected failure: printed as one line, exit code attached."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _is_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return bool in typing.get_args(annotation)
    return False


def add_settings_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """One ``--flag`` per settings field, help text from the field's description."""
    for name in names:
        field = Settings.model_fields[name]
        flag = "--" + name.replace("_", "-")
        env = f"CODEACT_{name.upper()}"
        default = field.default
        help_text = f"{field.description} [env {env}; default: {default}]"
        if _is_bool(field.annotation):
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
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
        description="List the model catalog: every quant, whether it is on disk, its size "
        "and path, and how to get it.",
    )
    add_run_parser(sub)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _configure_logging(settings.log_level)
    engine = load_engine(settings)
    import uvicorn

    from server.app import create_app

    app = create_app(settings, engine)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level.lower()
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else EXIT_RUNTIME


def load_engine(settings: Settings):  # noqa: ANN201 - LlamaEngine, imported lazily
    """Resolve, validate and load the model; raise CLIError with one line on failure."""
    from models.errors import ModelError
    from models.store import resolve_model

    try:
        resolved = resolve_model(settings.model, settings.quant)
    except ModelError as exc:
        raise CLIError(str(exc), EXIT_MODEL) from exc
    log.info("%s", resolved.log_line)
    from models.engine import LlamaEngine
    from models.engine_api import EngineError

    aliases = tuple(
        dict.fromkeys(
            a for a in (resolved.path.name, "default", settings.model) if a != resolved.name
        )
    )
    try:
        return LlamaEngine(
            resolved.path,
            model_id=resolved.name,
            n_gpu_layers=settings.n_gpu_layers,
            ctx_size=settings.ctx_size,
            threads=settings.threads,
            batch_size=settings.batch_size,
            max_queue=settings.max_queue,
            aliases=aliases,
        )
    except EngineError as exc:
        raise CLIError(f"{exc}; check the file or run `codeact-server models`", EXIT_MODEL) from exc


def cmd_pull(args: argparse.Namespace) -> int:
    from models.errors import ModelError
    from models.pull import pull_model

    try:
        path = pull_model(args.name, args.quant)
    except ModelError as exc:
        raise CLIError(str(exc), EXIT_MODEL) from exc
    print(f"ready: {path}")
    return 0


def cmd_models(_: argparse.Namespace) -> int:
    from models.store import list_models

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


COMMANDS = {"serve": cmd_serve, "pull": cmd_pull, "models": cmd_models, "run": cmd_run}


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
