"""The `crmscore` command line. Each command group lives in its own module of this package."""

from __future__ import annotations

import sys

from crmscore.cli.root import app, err_console
from crmscore.errors import CrmscoreError

__all__ = ["app", "main"]

def _register() -> None:
    from crmscore.cli import campaign, data, demo, features, lookalike, models, monitor, serve  # noqa: F401  (each module adds its commands to `app`)


def main() -> None:
    """Run the CLI. A problem with the user's data, config or paths ends in one line, `error: ...`, and exit
    code 2; a traceback means a bug."""
    _register()
    try:
        app()
    except CrmscoreError as exc:
        _fail(str(exc), exc.exit_code)
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug or the machine, keep the traceback
            raise
        _fail(f"{exc.filename}: {exc.strerror or exc}; check the path (does its folder exist, may it be written?)", 2)


def _fail(message: str, code: int) -> None:
    one_line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    err_console.print(f"[bold red]error:[/] {one_line}", highlight=False, soft_wrap=True)
    sys.exit(code)
