"""`crmscore train lookalike`, `score lookalike` and `lookalike expand|list`: seed audiences to ranked,
explained lookalikes (crmscore.models.lookalike)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crmscore.cli.root import app
from crmscore.cli.models import ConfigOpt, score_app, train_app

log = logging.getLogger("crmscore")
lookalike_app = typer.Typer(help="Lookalike audiences: export an expansion, list audiences.", no_args_is_help=True)
app.add_typer(lookalike_app, name="lookalike")

AudienceOpt = Annotated[str, typer.Option("--audience", "-a", help="Audience name (model lookalike-<name>).")]
AliasOpt = Annotated[str, typer.Option(help="Registry alias or version number to use.")]
AsOfOpt = Annotated[dt.datetime | None, typer.Option(
    "--as-of", formats=["%Y-%m-%d"], help="Features at this date (default: the day after the last data).")]


@train_app.command("lookalike")
def train_lookalike(
    config: ConfigOpt,
    name: Annotated[str, typer.Option("--name", "-n", help="Audience name; registered as lookalike-<name>.")],
    seed_file: Annotated[Path | None, typer.Option(
        help="Seed ids: one a line, or a CSV/Parquet file with a customer_id column.")] = None,
    seed_query: Annotated[str | None, typer.Option(
        help="Seed predicate over the feature table, e.g. \"monetary_365d >= 500 and category_share_baby > 0.2\"; "
             "its columns are left out of the model.")] = None,
    seed_campaign: Annotated[str | None, typer.Option(
        help="Seed = responders to this campaign (needs tasks.lookalike.campaign_responses in the config).")] = None,
    as_of: Annotated[dt.datetime | None, typer.Option(
        "--as-of", formats=["%Y-%m-%d"], help="Train as if today were this date: only data before it is used.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        help="Features never used (names or glob patterns; repeat or separate with commas).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (run id, version, metrics).")] = False,
) -> None:
    """Train a lookalike model for a seed audience: evaluate it on a hidden part of the seed against the
    centroid and random baselines, log it to MLflow and register it as lookalike-<name>@challenger."""
    from crmscore.config import load_config
    from crmscore.models.lookalike import LookalikeSettings, check_name, train_lookalike

    check_name(name)
    cfg = load_config(config)
    patterns = [p.strip() for item in exclude or [] for p in item.split(",") if p.strip()]
    settings = LookalikeSettings.from_config(cfg, exclude=patterns)
    data = None
    if cfg.data.transactions is not None:
        from crmscore.cli.common import load_data

        data = load_data(cfg)
    # MLflow prints registration notes on stdout; with --json stdout carries only the JSON object
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = train_lookalike(cfg, name, settings, seed_file=seed_file, seed_query=seed_query,
                                 seed_campaign=seed_campaign, as_of=as_of, data=data, progress=not as_json)
    if as_json:
        print(json.dumps(result.summary(), default=str))
        return
    console = Console()
    m, base = result.metrics, result.baselines
    table = Table(title=f"{result.model_name}, grade {result.grade}: recall of {int(m['seed_hidden'])} hidden seed "
                        f"members in the top 1/5/10/20% of {int(m['candidates']):,} customers")
    cols = ("recall_top1", "recall_top5", "recall_top10", "recall_top20", "lift_top10", "roc_auc")
    table.add_column("", no_wrap=True)
    for c, head in zip(cols, ("1%", "5%", "10%", "20%", "lift@10%", "ROC-AUC")):
        table.add_column(head, justify="right")
    table.add_row("model", *[f"{m[c]:.3f}" for c in cols])
    for bname, b in base.items():
        table.add_row(f"baseline: {bname}", *[f"{b[c]:.3f}" for c in cols])
    console.print(table)
    curve = ", ".join(f"{r['total_seed_size']}: {r['model']:.2f} vs {r['centroid']:.2f}" for r in
                      result.curve.to_dict("records"))
    needed = m.get("seed_size_needed")
    console.print(f"seed {int(m['seed_size'])} ({result.seed.kind}); recall@10% by seed size (model vs centroid): "
                  f"{curve}; beats the centroid from {int(needed) if needed else 'no size tried'}", highlight=False)
    if result.excluded:
        console.print(f"excluded features: {', '.join(result.excluded)}", highlight=False)
    console.print(f"MLflow run {result.run_id}, registered {result.model_name} version {result.version} (@challenger); "
                  f"`crmscore promote {result.model_name}` makes it @champion", highlight=False)


def _scores(audience: str, config: Path, as_of, alias: str, top_k: int):  # noqa: ANN001, ANN202
    from crmscore.config import load_config
    from crmscore.models import registry
    from crmscore.models.lookalike import PREFIX, LookalikeSettings, check_name, load_population
    from crmscore.scoring.batch import score_audience

    check_name(audience)
    registry.configure()
    bundle, mv = registry.load_bundle(PREFIX + audience, alias)
    cfg = load_config(config)
    data = None
    if bundle.mode == "transactions":
        from crmscore.cli.common import load_data

        data = load_data(cfg)
    settings = LookalikeSettings(**bundle.settings)
    pop = load_population(cfg, settings, as_of=as_of, data=data, feature_set=bundle.feature_set, rfm=bundle.rfm,
                          table_schema=bundle.table_schema)
    scores = score_audience(bundle, pop.frame, top_k=top_k, version=str(mv.version), progress=True)
    return scores.rename(columns={"rfm_segment": "segment"}), mv


@score_app.command("lookalike")
def score_lookalike(
    audience: AudienceOpt,
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    as_of: AsOfOpt = None,
    top_k: Annotated[int, typer.Option(min=0, max=50, help="Reasons per customer (0 = none).")] = 5,
    alias: AliasOpt = "champion",
) -> None:
    """Every customer outside the seed: similarity (0-1), percentile, band (high/medium/low/none) and the
    top-k reasons they resemble the seed, most similar first."""
    from crmscore.scoring.batch import write_scores

    scores, mv = _scores(audience, config, as_of, alias, top_k)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_scores(scores, out)
    bands = scores["band"].value_counts().to_dict()
    log.info("wrote %s customers scored by lookalike-%s v%s (@%s) to %s; bands: %s", f"{len(scores):,}", audience,
             mv.version, alias, out, ", ".join(f"{b} {bands.get(b, 0):,}" for b in ("high", "medium", "low", "none")))


@lookalike_app.command("expand")
def expand(
    audience: AudienceOpt,
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv for CSV, else Parquet.")],
    top: Annotated[str | None, typer.Option(help="Share of customers outside the seed, e.g. 5% or 0.05.")] = None,
    size: Annotated[int | None, typer.Option(min=1, help="Number of customers instead of a share.")] = None,
    as_of: AsOfOpt = None,
    alias: AliasOpt = "champion",
) -> None:
    """Write the expansion for export (an ad platform, a campaign tool): the most similar customers outside the
    seed, as customer_id, similarity, rank, percentile and band."""
    from crmscore.models.lookalike import expand as expand_scores
    from crmscore.models.lookalike import parse_top

    share = parse_top(top) if top is not None else None
    if (share is None) == (size is None):
        from crmscore.models.seeds import SeedError

        raise SeedError("give exactly one of --top (a share, e.g. 5%) or --size (a number of customers)")
    scores, mv = _scores(audience, config, as_of, alias, 0)
    chosen = expand_scores(scores, top=share, size=size)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        chosen.to_csv(out, index=False)
    else:
        chosen.to_parquet(out, index=False)
    log.info("wrote %s of %s customers outside the seed (lookalike-%s v%s, similarity >= %.3f) to %s",
             f"{len(chosen):,}", f"{len(scores):,}", audience, mv.version,
             chosen["similarity"].min() if len(chosen) else float("nan"), out)


@lookalike_app.command("list")
def list_audiences() -> None:
    """Registered audiences with their versions, aliases, seed and recall at 10%."""
    from mlflow.tracking import MlflowClient

    from crmscore.models import registry
    from crmscore.models.lookalike import PREFIX

    registry.configure()
    table = Table(title="lookalike audiences")
    table.add_column("audience", no_wrap=True)
    for col in ("version", "seed", "recall@10% (centroid)", "grade"):
        table.add_column(col)
    client = MlflowClient()
    for rm in sorted(client.search_registered_models(f"name LIKE '{PREFIX}%'"), key=lambda r: r.name):
        for v in registry.describe(rm.name):
            t = v["tags"]
            table.add_row(rm.name[len(PREFIX):], " ".join([str(v["version"]), *("@" + a for a in v["aliases"])]),
                          f"{t.get('seed_kind', '')} {t.get('seed_size', '')}",
                          f"{t.get('recall_top10', '')[:5]} ({t.get('recall_top10_centroid', '')[:5]})",
                          t.get("grade", ""))
    Console().print(table)
