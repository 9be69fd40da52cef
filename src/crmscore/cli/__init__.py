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
    from crmscore.cli import data, demo, features, lookalike, models, serve  # noqa: F401  (each module adds its commands to `app`)


def main() -> None:
    _register()
    try:
        app()
    except CrmscoreError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
