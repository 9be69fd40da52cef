"""`crmscore train`, `promote`, `score` and `models`: training, the registry and batch scoring."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crmscore.cli.root import app

log = logging.getLogger("crmscore")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project YAML config.")]
train_app = typer.Typer(help="Train a model, evaluate it out-of-time against baselines, register it.",
                        no_args_is_help=True)
score_app = typer.Typer(help="Score customers with a registered model (batch).", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(score_app, name="score")


def _print_result(result, as_json: bool) -> None:  # noqa: ANN001
    from crmscore.models.evaluation import comparison_columns

    if as_json:
        print(json.dumps(result.summary(), default=str))
        return
    console = Console()
    kind = result.bundle.kind
    table = Table(title=f"{result.task}: {'held-out experiment rows' if kind == 'uplift' else 'out-of-time test' if result.dataset.mode == 'transactions' else 'held-out test'} ({int(result.metrics['test_rows']):,} customers), grade "
                        f"{result.grade}")
    cols = (*comparison_columns(kind), *(("brier", "ece") if kind == "binary" else ()))
    table.add_column("")
    for c in cols:
        table.add_column(c, justify="right")
    table.add_row("model", *[f"{result.metrics[c]:.4f}" if c in result.metrics else "-" for c in cols])
    for name, m in result.baselines.items():
        table.add_row(f"baseline: {name}", *[f"{m[c]:.4f}" if c in m else "-" for c in cols])
    console.print(table)
    m = result.metrics
    if kind == "binary":
        console.print(f"Brier {m['brier_uncalibrated']:.4f} -> {m['brier']:.4f}, "
                      f"ECE {m['ece_uncalibrated']:.4f} -> {m['ece']:.4f} after calibration", highlight=False)
    for comp in result.bundle.companions:
        nan = float("nan")
        console.print(f"{comp}: MAE {m.get(f'{comp}_mae', nan):.2f} days on {int(m.get(f'{comp}_test_rows', 0)):,} "
                      f"buyers (baseline {m.get(f'{comp}_mae_baseline', nan):.2f}), interval coverage "
                      f"{m.get(f'{comp}_interval_coverage', nan):.0%}", highlight=False)
    if kind == "uplift":
        console.print(f"measured average effect {m['ate']:+.4f}; top {m['share_targeted']:.0%} by predicted lift: "
                      f"{m['incremental_purchases_at_share']:,.1f} incremental (random: "
                      f"{m['incremental_purchases_random']:,.1f}); campaign report logged as evaluation/report.html",
                      highlight=False)
    if kind == "regression":
        console.print(f"total spend: predicted {m['predicted_total']:,.2f}, actual {m['test_total']:,.2f}",
                      highlight=False)
    console.print(f"MLflow run {result.run_id}, registered version {result.version} (@challenger)", highlight=False)


LookbackOpt = Annotated[int | None, typer.Option(help="Optional activity filter: only customers with a purchase "
                                                    "within this many days (default: the task's population).")]


@train_app.command("churn")
def train_churn(
    config: ConfigOpt,
    as_of: Annotated[dt.datetime | None, typer.Option(
        "--as-of", formats=["%Y-%m-%d"], help="Train as if today were this date: only data before it is used.")] = None,
    horizon_days: Annotated[int | None, typer.Option(help="Days after a cutoff in which no purchase = churned.")] = None,
    lookback_days: LookbackOpt = None,
    tune: Annotated[int, typer.Option("--tune", help="Optuna trials (0 = no search); each is an MLflow child run.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (run id, version, metrics).")] = False,
) -> None:
    """Train churn: transactional (purchases) or feature-table mode, as the config's data says."""
    _train("churn", config, as_of, tune, as_json, horizon_days=horizon_days, lookback_days=lookback_days)


AsOfOpt = Annotated[dt.datetime | None, typer.Option(
    "--as-of", formats=["%Y-%m-%d"], help="Train as if today were this date: only data before it is used.")]
HorizonOpt = Annotated[int | None, typer.Option(help="Days after a cutoff that the label looks at (default 30).")]
TuneOpt = Annotated[int, typer.Option("--tune", help="Optuna trials (0 = no search); each is an MLflow child run.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (run id, version, metrics).")]


@train_app.command("next-purchase")
def train_next_purchase(config: ConfigOpt, as_of: AsOfOpt = None, horizon_days: HorizonOpt = None,
                        lookback_days: LookbackOpt = None, tune: TuneOpt = 0, as_json: JsonOpt = False) -> None:
    """Train next-purchase: P(an order in the next horizon), with days to the next order (median and interval)."""
    _train("next-purchase", config, as_of, tune, as_json, horizon_days=horizon_days, lookback_days=lookback_days)


@train_app.command("expected-spend")
def train_expected_spend(config: ConfigOpt, as_of: AsOfOpt = None, horizon_days: HorizonOpt = None,
                         lookback_days: LookbackOpt = None, tune: TuneOpt = 0, as_json: JsonOpt = False) -> None:
    """Train expected-spend: the amount spent in the next horizon (LightGBM Tweedie), against BG/NBD + Gamma-Gamma."""
    _train("expected-spend", config, as_of, tune, as_json, horizon_days=horizon_days, lookback_days=lookback_days)


@train_app.command("next-category")
def train_next_category(
    config: ConfigOpt, as_of: AsOfOpt = None, horizon_days: HorizonOpt = None, lookback_days: LookbackOpt = None,
    top_categories: Annotated[int | None, typer.Option(help="How many of the largest categories (default 20).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train next-category: P(buying each top category in the next horizon), against popularity and co-purchase rules."""
    _train("next-category", config, as_of, 0, as_json, horizon_days=horizon_days, lookback_days=lookback_days,
           top_categories=top_categories)


CampaignOpt = Annotated[str, typer.Option("--campaign", help="The campaign's name in the treatments table (or a name "
                                          "for a ready experiment table's model).")]


@train_app.command("uplift")
def train_uplift(
    config: ConfigOpt, campaign: CampaignOpt,
    horizon_days: Annotated[int | None, typer.Option(help="Days after each customer's treatment in which the outcome "
                                                          "is read (default 30).")] = None,
    outcome: Annotated[str | None, typer.Option(help="purchase (default) or spend.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train uplift-<campaign>: each customer's expected lift from the campaign (DR-learner on LightGBM), measured by
    Qini and AUUC against targeting everyone, by churn score and by purchase probability; writes a campaign report."""
    from crmscore.config import load_config

    section = {**load_config(config).tasks.get("uplift", {})}
    _train(f"uplift-{campaign}", config, None, 0, as_json, section=section, horizon_days=horizon_days,
           outcome=outcome)


def _train(task_name: str, config: Path, as_of, tune: int, as_json: bool, section=None, **overrides) -> None:  # noqa: ANN001
    from crmscore.config import load_config
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task

    cfg = load_config(config)
    task = get_task(task_name)
    settings = task.settings({**(section or {}), **cfg.tasks.get(task_name, {})}, **overrides)
    data = None
    if cfg.data.transactions is not None:
        from crmscore.cli.common import load_data

        data = load_data(cfg)
    import contextlib
    import sys

    # MLflow prints registration notes on stdout; with --json stdout carries only the JSON object
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = train_task(task, cfg, settings, as_of=as_of, data=data, tune_trials=tune, progress=not as_json)
    _print_result(result, as_json)


@app.command("promote")
def promote(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. churn.")],
    force: Annotated[bool, typer.Option("--force", help="Promote even if it does not beat the champion.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --force; recorded on the version).")] = None,
) -> None:
    """Move alias @champion to @challenger when it beats the champion on the same out-of-time test."""
    from crmscore.models import registry

    registry.configure()
    outcome = registry.promote(model, force=force, reason=reason)
    Console().print(outcome["message"], highlight=False)
    if "champion_value" in outcome:
        label = registry.METRIC_LABELS.get(outcome["metric"], outcome["metric"])
        Console().print(f"{label} on the challenger's test ({outcome['test_rows']:,} customers): challenger "
                        f"{outcome['challenger_value']:.4f}, champion {outcome['champion_value']:.4f}",
                        highlight=False)


@app.command("models")
def models(name: Annotated[str, typer.Argument(help="Registered model name.")] = "churn") -> None:
    """List a registered model's versions with aliases and test metrics."""
    from crmscore.models import registry

    registry.configure()
    table = Table(title=f"registered model {name}")
    for col in ("version", "aliases", "test metric", "grade", "test cutoff", "created"):
        table.add_column(col)
    for v in registry.describe(name):
        t = v["tags"]
        metric = t.get("primary_metric", "roc_auc")
        table.add_row(str(v["version"]), ", ".join("@" + a for a in v["aliases"]), f"{metric} {t.get(metric, '')}",
                      t.get("grade", ""), t.get("test_cutoff", ""), v["created"][:19])
    Console().print(table)


OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")]
ScoreAsOfOpt = Annotated[dt.datetime | None, typer.Option(
    "--as-of", formats=["%Y-%m-%d"], help="Score the population at this date (default: after the last data).")]
TopKOpt = Annotated[int, typer.Option(min=0, max=50, help="Reasons per customer (0 = none).")]


@score_app.command("churn")
def score_churn(
    config: ConfigOpt,
    out: OutOpt,
    as_of: ScoreAsOfOpt = None,
    top_k: TopKOpt = 5,
    alias: Annotated[str, typer.Option(help="Registry alias or version number to use.")] = "champion",
    engine: Annotated[str | None, typer.Option(
        "--engine", help="duckdb or spark (features and scoring as Spark jobs; --out becomes a folder of Parquet "
                         "files); default: the config's engine.")] = None,
) -> None:
    """Write customer_id, score, decile, segment, lifecycle_stage, model_version and the top-k reasons."""
    _score("churn", config, out, as_of, top_k, alias, engine)


def _score(name: str, config: Path, out: Path, as_of, top_k: int, alias: str,  # noqa: ANN001
           engine: str | None = None) -> None:
    from crmscore.cli.common import engine_of, load_data
    from crmscore.config import load_config
    from crmscore.models import registry
    from crmscore.scoring.batch import stream_scores, transactional_population

    registry.configure()
    bundle, mv = registry.load_bundle(name, alias)
    cfg = load_config(config)
    if engine_of(cfg, engine) == "spark":
        from crmscore.cli.common import load_spark_data
        from crmscore.errors import ConfigError
        from crmscore.scoring.spark import score_on_spark, write_spark_scores

        if bundle.mode == "feature_table":
            raise ConfigError(f"{name}: a model trained on a ready feature table (data.features) scores on DuckDB; "
                              f"drop --engine spark")
        data = load_spark_data(cfg)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_spark_scores(score_on_spark(bundle, data, as_of or data.default_as_of(), top_k=top_k,
                                          version=str(mv.version)), out)
        log.info("wrote %s scores from %s v%s (@%s) on Spark to %s", name, name, mv.version, alias, out)
        return
    if bundle.mode == "feature_table":
        from crmscore.models.feature_table import load_feature_table

        frame = load_feature_table(cfg, require_label=False, schema=bundle.table_schema).frame
    else:
        data = load_data(cfg)
        as_of = as_of or data.default_as_of()
        frame = transactional_population(bundle, data, as_of)
        data.con.close()  # the loaded tables are not read again: their memory is the scoring's
    constants = {}
    if bundle.mode != "feature_table":  # the cutoff and model, so monitoring can judge the scores later
        from crmscore.features.build import as_of_timestamp

        constants = {"as_of": as_of_timestamp(as_of), "model": name}
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = stream_scores(bundle, frame, out, top_k=top_k, version=str(mv.version), progress=True,
                         rename={"rfm_segment": "segment"}, constants=constants)
    log.info("wrote %s scores from %s v%s (@%s) to %s", f"{rows:,}", name, mv.version, alias, out)


@score_app.command("next-purchase")
def score_next_purchase(
    config: ConfigOpt,
    out: OutOpt,
    as_of: ScoreAsOfOpt = None,
    top_k: TopKOpt = 5,
    alias: Annotated[str, typer.Option(help="Registry alias of the models (next-purchase, and expected-spend and "
                                            "next-category when registered).")] = "champion",
    keep_regular: Annotated[bool, typer.Option(
        "--keep-regular", help="Keep categories the customer buys regularly in next_categories.")] = False,
    categories: Annotated[int, typer.Option(min=0, help="Categories listed per customer (0 = all).")] = 5,
    engine: Annotated[str | None, typer.Option(
        "--engine", help="duckdb or spark (the next-purchase model only, through the same mapInArrow path as "
                         "score churn; --out becomes a folder of Parquet files); default: the config's engine.")] = None,
) -> None:
    """Write per customer: score (purchase probability), days_to_next (median, low, high) and the top-k reasons;
    expected_spend, and next_categories (ranked, with probabilities) with the top category's reasons, when
    those models are registered with the alias (columns of absent models are left out)."""
    from crmscore.cli.common import engine_of, load_data
    from crmscore.config import load_config
    from crmscore.models import registry
    from crmscore.scoring.batch import NEXT_PURCHASE_MODELS, score_next_purchase, write_scores

    registry.configure()
    if engine_of(load_config(config), engine) == "spark":
        # expected-spend and next-category read other feature sets and join per customer: DuckDB only for now
        log.info("on Spark: the next-purchase model's columns only (no expected_spend or next_categories)")
        _score("next-purchase", config, out, as_of, top_k, alias, "spark")
        return
    models, absent = {}, []
    for name in NEXT_PURCHASE_MODELS:
        try:
            bundle, mv = registry.load_bundle(name, alias)
        except registry.RegistryError:
            if name == "next-purchase":
                raise
            absent.append(name)  # each model scores on its own: the absent one's columns are left out
            continue
        models[name] = (bundle, str(mv.version))
    if absent:
        log.info("no %s model with alias @%s in the registry: next-purchase scores without %s columns",
                 " or ".join(absent), alias, "their" if len(absent) > 1 else "its")
    data = load_data(load_config(config))
    as_of = as_of or data.default_as_of()
    scores = score_next_purchase(models, data, as_of, top_k=top_k, keep_regular=keep_regular,
                                 max_categories=categories, progress=True)
    scores = scores.rename(columns={"rfm_segment": "segment"})
    from crmscore.features.build import as_of_timestamp

    scores["as_of"], scores["model"] = as_of_timestamp(as_of), "next-purchase"  # for monitoring
    out.parent.mkdir(parents=True, exist_ok=True)
    write_scores(scores, out)
    log.info("wrote %s next-purchase scores (models @%s: %s) to %s", f"{len(scores):,}", alias,
             ", ".join(f"{n} v{v}" for n, (_, v) in models.items()), out)


@score_app.command("uplift")
def score_uplift(
    config: ConfigOpt,
    out: OutOpt,
    campaign: CampaignOpt,
    as_of: ScoreAsOfOpt = None,
    top_k: TopKOpt = 5,
    alias: Annotated[str, typer.Option(help="Registry alias or version number to use.")] = "champion",
) -> None:
    """Write per customer: score (expected lift), p_control and p_treated (buying without and with the campaign),
    quadrant (persuadable / sure_thing / lost_cause / do_not_disturb), decile and the top-k reasons of the lift."""
    _score(f"uplift-{campaign}", config, out, as_of, top_k, alias)
