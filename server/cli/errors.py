"""The CLI's expected-failure type and exit codes, in a module of their own.

``python -m server.cli.main`` runs ``cli.py`` as ``__main__``; subcommand modules that imported
``CLIError`` from ``server.cli.main`` would get a second copy of the class that ``main`` does not
catch. Defining it here gives every module the same class; ``load_engine``, the one
failure-translating helper two commands share (``serve``, ``run``), is here for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.engine.api import Engine
    from server.settings import Settings

EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_RUNTIME = 1


class CLIError(Exception):
    """An expected failure: printed as one line, exit code attached."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load_llama_first(settings: Settings) -> None:
    """``composition.load_llama_first`` with its failure as a one-line CLI error."""
    from server.composition import SetupError, load_llama_first

    try:
        load_llama_first(settings)
    except SetupError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc


def load_engine(settings: Settings) -> Engine:
    """``composition.build_engine`` with its failures as one-line CLI errors."""
    from server.composition import SetupError, build_engine

    try:
        return build_engine(settings)
    except SetupError as exc:
        raise CLIError(str(exc), EXIT_MODEL if exc.kind == "model" else EXIT_USAGE) from exc
