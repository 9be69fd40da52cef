"""`crmscore features ...` and `crmscore segment`: point-in-time feature tables and segments."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crmscore.cli.root import app
from crmscore.files import write_table_parquet

log = logging.getLogger("crmscore")
features_app = typer.Typer(help="Build point-in-time customer features.", no_args_is_help=True)
app.add_typer(features_app, name="features")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project YAML config.")]
AsOfOpt = Annotated[dt.datetime, typer.Option("--as-of", formats=["%Y-%m-%d"],
                                              help="Cutoff date: only data strictly before it is used.")]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", help="duckdb (embedded) or spark (the config's spark.master); default: the config's engine.")]


@features_app.command("build")
def build(config: ConfigOpt, as_of: AsOfOpt,
          out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file (a folder of them on Spark).")],
          engine: EngineOpt = None) -> None:
    """Write one row per customer known before AS_OF, with every declared feature and the segments."""
    from crmscore.cli.common import engine_of, load_data
    from crmscore.config import load_config
    from crmscore.features import build_features, feature_set_for
    from crmscore.progress import Steps

    cfg = load_config(config)
    if engine_of(cfg, engine) == "spark":
        _build_on_spark(cfg, as_of, out)
        return
    data = load_data(cfg)
    with Steps(2, "features") as steps:
        steps.step("building features")
        fs = feature_set_for(data, as_of)
        df = build_features(data, as_of, fs)
        steps.step(f"writing {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_table_parquet(df, out)
    log.info("wrote %s customers x %d features (%s) to %s", f"{len(df):,}", len(fs.features), fs.version, out)


def _build_on_spark(cfg, as_of: dt.datetime, out: Path) -> None:  # noqa: ANN001
    from crmscore.cli.common import load_spark_data
    from crmscore.features import feature_set_for
    from crmscore.features.spark import spark_features

    data = load_spark_data(cfg)
    fs = feature_set_for(data, as_of)
    out.parent.mkdir(parents=True, exist_ok=True)
    spark_features(data, as_of, fs).write.mode("overwrite").parquet(str(out))
    log.info("wrote %d features (%s) on Spark to %s (a folder of Parquet files)", len(fs.features), fs.version, out)


@features_app.command("list")
def list_features(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Show the set this data gives.")] = None,
    as_of: Annotated[dt.datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"])] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for the README).")] = False,
) -> None:
    """List the declared features with type, window, unit and description."""
    from crmscore.features import declare
    from crmscore.features.definitions import Vocabulary

    if config is not None:
        from crmscore.cli.common import load_data
        from crmscore.features import feature_set_for

        data = load_data(config)
        feats = list(feature_set_for(data, as_of or data.default_as_of()).features)
    else:
        example = Vocabulary(("<category>",), ("<channel>",), ("<event_type>",), (("<attribute>", "text"),))
        feats = declare([30, 90, 180, 365], example)
    if markdown:
        print("| feature | type | window | unit | description |")
        print("|---|---|---|---|---|")
        for f in feats:
            window = f"{f.window_days}d" if f.window_days else "all history"
            print(f"| `{f.name}` | {f.dtype} | {window} | {f.unit or '-'} | {f.description} |")
        return
    table = Table(title=f"{len(feats)} features")
    for col in ("feature", "type", "window", "unit", "description"):
        table.add_column(col)
    for f in feats:
        table.add_row(f.name, f.dtype, f"{f.window_days}d" if f.window_days else "all", f.unit, f.description)
    Console().print(table)


@app.command("segment")
def segment(config: ConfigOpt, as_of: AsOfOpt,
            out: Annotated[Path | None, typer.Option("--out", "-o", help="Write segments per customer.")] = None
            ) -> None:
    """RFM scores, RFM segment and lifecycle stage per customer at AS_OF, with counts."""
    from crmscore.cli.common import load_data
    from crmscore.features import build_features
    from crmscore.features.segments import SEGMENT_COLUMNS

    data = load_data(config)
    df = build_features(data, as_of)
    print_segment_counts(df)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        df[["customer_id", *SEGMENT_COLUMNS]].to_parquet(out, index=False)
        log.info("wrote segments of %s customers to %s", f"{len(df):,}", out)


def print_segment_counts(df) -> None:  # noqa: ANN001
    import pandas as pd

    console = Console()
    cross = pd.crosstab(df["rfm_segment"], df["lifecycle_stage"], margins=True, margins_name="total")
    table = Table(title=f"Customers by RFM segment and lifecycle stage ({len(df):,})")
    table.add_column("rfm_segment")
    for col in cross.columns:
        table.add_column(str(col), justify="right")
    for seg, row in cross.iterrows():
        table.add_row(str(seg), *[f"{v:,}" for v in row])
    console.print(table)


@features_app.command("training-set")
def training_set(
    task_name: Annotated[str, typer.Argument(metavar="TASK", help="churn, next-purchase, expected-spend, ...")],
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: a Parquet file on duckdb; a folder (Parquet "
                                                          "files or a Delta table) on Spark.")],
    as_of: Annotated[dt.datetime | None, typer.Option(
        "--as-of", formats=["%Y-%m-%d"], help="As if today were this date (default: after the last data).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet, or delta (Spark with delta-spark).")] = "parquet",
    engine: EngineOpt = None,
) -> None:
    """Write a task's training set (its cutoffs' features and labels, stacked, with `as_of`), the table
    `crmscore train` fits on. On Spark it is written by the cluster, not collected; training itself stays on
    one machine (README, Spark)."""
    from crmscore.cli.common import engine_of, load_data
    from crmscore.config import load_config
    from crmscore.errors import ConfigError
    from crmscore.models.pipeline import training_plan
    from crmscore.models.tasks import get_task

    cfg = load_config(config)
    task = get_task(task_name)
    settings = task.settings(cfg.tasks.get(task_name))
    cutoffs = lambda cut: [*cut["train"], cut["test"]]  # noqa: E731
    if engine_of(cfg, engine) == "spark":
        from crmscore.cli.common import load_spark_data
        from crmscore.features.spark import spark_training_set, write_table

        data = load_spark_data(cfg)
        cut, fs, label, _, _ = training_plan(task, data, settings, as_of)
        write_table(spark_training_set(data, cutoffs(cut), label, fs), str(out), fmt)
        log.info("wrote %s's training set (%d cutoffs, %s) on Spark to %s (%s)", task_name, len(cutoffs(cut)),
                 fs.version, out, fmt)
        return
    if fmt != "parquet":
        raise ConfigError(f"--format {fmt}: duckdb writes parquet; use --engine spark for delta")
    from crmscore.features.build import build_training_set

    data = load_data(cfg)
    cut, fs, label, _, _ = training_plan(task, data, settings, as_of)
    frame = build_training_set(data, cutoffs(cut), label, fs, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table_parquet(frame, out)
    log.info("wrote %s's training set: %s rows, %d cutoffs (%s) to %s", task_name, f"{len(frame):,}",
             len(cutoffs(cut)), fs.version, out)
