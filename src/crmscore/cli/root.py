"""The `crmscore` Typer application and its root options (logging). Command modules of this package add
their commands to `app`; crmscore.cli imports them all and runs it."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler

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
