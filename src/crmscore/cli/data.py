"""`crmscore data ...`: check source data against the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crmscore.cli.root import app
from crmscore.errors import DataContractError

data_app = typer.Typer(help="Check source data against the data contract.", no_args_is_help=True)
app.add_typer(data_app, name="data")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project YAML config.", exists=False)]


@data_app.command("validate")
def validate(
    config: ConfigOpt,
    max_bad_share: Annotated[float | None, typer.Option(
        help="Fail when a table's share of bad rows is above this (default: the config's, 0.01).")] = None,
) -> None:
    """Check every configured table; quarantine bad rows with reasons; exit 2 when too many are bad."""
    from crmscore.cli.common import load_data

    data = load_data(config, strict=False, max_bad_share=max_bad_share)
    console = Console()
    table = Table(title=f"Data contract: {config}")
    for col in ("table", "rows", "bad rows", "bad share", "quarantine"):
        table.add_column(col)
    for rep in data.reports.values():
        table.add_row(rep.table, f"{rep.rows_read:,}", f"{rep.rows_bad:,}", f"{rep.bad_share:.2%}",
                      str(rep.quarantine_path or "-"))
    console.print(table)
    for rep in data.reports.values():
        for issue in rep.issues:
            console.print(f"[yellow]{issue.message(rep.rows_read)}[/]", highlight=False, soft_wrap=True)
        for note in rep.notes:
            console.print(f"note: {rep.table}: {note}", highlight=False)
    lo, hi = data.ts_range()
    console.print(f"transactions span {lo} to {hi} ({data.config.timezone} local time)", highlight=False)
    if data.bad_tables:
        from crmscore.data.loader import too_many_bad_rows

        raise DataContractError(too_many_bad_rows(data))
    console.print("[green]data contract OK[/]")
