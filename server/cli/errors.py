"""The CLI's expected-failure type and exit codes, in a module of their own.

``python -m server.cli.main`` runs ``cli.py`` as ``__main__``; subcommand modules that imported
``CLIError`` from ``server.cli.main`` would get a second copy of the class that ``main`` does not
catch. Defining it here gives every module the same class.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_RUNTIME = 1


class CLIError(Exception):
    """An expected failure: printed as one line, exit code attached."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code
