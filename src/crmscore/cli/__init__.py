"""The `crmscore` command line. Each command group lives in its own module of this package."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler

from crmscore.errors import CrmscoreError

app = typer.Typer(
    name="crmscore",
    help="Customer predictions for CRM teams: data checks, features, segments, models and scoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    from crmscore.settings import get_settings

    level = logging.DEBUG if verbose else getattr(logging, get_settings().log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
                        force=True)
    for noisy in ("mlflow", "alembic", "urllib3", "git", "numba", "matplotlib", "bentoml", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _register() -> None:
    from crmscore.cli import data, demo, features, lookalike, models, monitor, serve  # noqa: F401  (each module adds its commands to `app`)


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
