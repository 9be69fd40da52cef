"""`crmscore campaign effect`: did a finished campaign work? Its measured effect against the control group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crmscore.cli.root import app

campaign_app = typer.Typer(help="Campaign experiments: the measured effect of a finished campaign.",
                           no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")


@campaign_app.command("effect")
def effect(
    config: Annotated[Path, typer.Option("--config", "-c", help="Project YAML config (with data.treatments).")],
    campaign: Annotated[str, typer.Option("--campaign", help="The campaign's name in the treatments table.")],
    horizon_days: Annotated[int, typer.Option(min=1, help="Days after each customer's treatment.")] = 30,
    outcome: Annotated[str, typer.Option(help="purchase (bought in the horizon) or spend (net, currency).")] = "purchase",
    by: Annotated[str, typer.Option(help="Segments: lifecycle_stage or rfm_segment at the campaign's start.")] =
    "lifecycle_stage",
    level: Annotated[float, typer.Option(min=0.5, max=0.999, help="Confidence level of the intervals.")] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Treated vs control outcome, the effect with its confidence interval (CUPED with the pre-period when it
    narrows it), for everyone and per segment."""
    from crmscore.cli.common import load_data
    from crmscore.errors import ConfigError
    from crmscore.models.campaign_effect import campaign_effect

    if outcome not in ("purchase", "spend") or by not in ("lifecycle_stage", "rfm_segment"):
        raise ConfigError("--outcome is purchase or spend; --by is lifecycle_stage or rfm_segment")
    table = campaign_effect(load_data(config), campaign, horizon_days, outcome, by, level)
    if as_json:
        print(json.dumps(table.to_dict("records"), default=float))
        return
    out = Table(title=f"campaign {campaign}: {outcome} within {horizon_days} days, treated vs control "
                      f"({level:.0%} intervals)")
    for col in ("segment", "treated", "control", "rate treated", "rate control", "effect", "interval", "method"):
        out.add_column(col, justify="left" if col in ("segment", "method") else "right")
    digits = 4 if outcome == "purchase" else 2
    for r in table.to_dict("records"):
        out.add_row(r["segment"], f"{r['treated']:,}", f"{r['control']:,}", f"{r['rate_treated']:.{digits}f}",
                    f"{r['rate_control']:.{digits}f}", f"{r['best_effect']:+.{digits}f}",
                    f"[{r['best_ci_low']:+.{digits}f}, {r['best_ci_high']:+.{digits}f}]",
                    r["method"] + (f" (variance -{r['variance_reduction']:.0%})" if r["method"] == "cuped" else ""))
    Console().print(out)
