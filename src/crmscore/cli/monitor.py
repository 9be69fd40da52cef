"""`crmscore monitor` and `crmscore retrain`: drift and realised performance of served models, and the
retraining loop that acts on them (crmscore.monitoring)."""

from __future__ import annotations

import datetime as dt
import glob
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from crmscore.cli.root import app

log = logging.getLogger("crmscore")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project YAML config.")]
AsOfOpt = Annotated[dt.datetime | None, typer.Option(
    "--as-of", formats=["%Y-%m-%d"], help="Check the population at this date (default: after the last data).")]


def _files(patterns: list[str] | None) -> list[Path]:
    out: list[Path] = []
    for p in patterns or []:
        found = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        if not found:
            from crmscore.errors import ConfigError

            raise ConfigError(f"--scores {p}: no file matches; give batch score files written by `crmscore score`")
        out.extend(Path(f) for f in found)
    return out


@app.command("monitor")
def monitor(
    config: ConfigOpt,
    as_of: AsOfOpt = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Model to check (repeatable; default every registered one with the alias).")] = None,
    alias: Annotated[str, typer.Option(help="Registry alias or version of the served models.")] = "champion",
    scores: Annotated[list[str] | None, typer.Option(
        "--scores", help="Batch score files (or globs) to judge against what customers then did (repeatable).")] = None,
    predictions: Annotated[bool, typer.Option(
        "--predictions/--no-predictions", help="Judge the service's prediction log too (CRMSCORE_HOME).")] = True,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for monitor.html and monitor.json.")] = Path("out/monitor"),
    mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the figures to MLflow.")] = True,
) -> None:
    """Drift against each model's training reference, segment migration and realised performance; writes an
    HTML report (offline) and JSON, logs the figures to MLflow on the model version."""
    from crmscore.cli.common import load_data
    from crmscore.config import load_config
    from crmscore.monitoring.report import write_html
    from crmscore.monitoring.run import headline, write_json
    from crmscore.monitoring.run import monitor as run_monitor
    from crmscore.settings import get_settings

    cfg = load_config(config)
    data = load_data(cfg)
    home = Path(get_settings().home)
    checks = run_monitor(cfg, data, as_of=as_of, models=model, alias=alias, score_files=_files(scores),
                         prediction_log=home / "predictions.sqlite" if predictions else None, home=home,
                         log_to_mlflow=mlflow_log)
    html = write_html(checks, cfg.monitoring, out / "monitor.html")
    write_json(checks, out / "monitor.json")
    from crmscore.monitoring.gauges import write_latest
    from crmscore.monitoring.run import clean

    # the headline for the service's /metrics gauges
    write_latest(home, [clean({**c.to_dict(), "headline": headline(c), "retrain": c.verdict["retrain"]})
                        for c in checks])
    console = Console()
    for c in checks:
        h = headline(c)
        realised = (f", realised ROC-AUC {h['realised_roc_auc']:.3f} (promoted {c.promised.get('roc_auc', float('nan')):.3f})"
                    if "realised_roc_auc" in h else "")
        waiting = f", {int(h['scores_waiting']):,} scores waiting" if h.get("scores_waiting") else ""
        console.print(f"{c.model} v{c.version} at {c.as_of}: drift {c.verdict['drift_status']} (worst PSI "
                      f"{h['feature_psi_max']:.3f}, score PSI {h['score_psi']:.3f}){realised}{waiting}; "
                      f"{'RETRAIN: ' + '; '.join(c.verdict['reasons']) if c.verdict['retrain'] else 'no retraining needed'}",
                      highlight=False)
    console.print(f"report: {html} and {out / 'monitor.json'}", highlight=False)


@app.command("retrain")
def retrain(
    config: ConfigOpt,
    task: Annotated[str | None, typer.Argument(help="Task to retrain (churn, next-purchase, ...).")] = None,
    all_tasks: Annotated[bool, typer.Option("--all", help="Every task with a champion.")] = False,
    if_drifted: Annotated[bool, typer.Option(
        "--if-drifted", help="Only when monitoring says so (drift past PSI act, or realised ROC-AUC fell).")] = False,
    scores: Annotated[list[str] | None, typer.Option(
        "--scores", help="Batch score files for the realised-performance check (with --if-drifted).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decisions as JSON.")] = False,
) -> None:
    """Train a challenger on the latest data and promote it only when it beats the champion on the same
    out-of-time rows by more than noise (paired bootstrap); every decision is recorded on the model version."""
    import contextlib
    import sys

    from crmscore.cli.common import load_data
    from crmscore.config import load_config
    from crmscore.errors import ConfigError
    from crmscore.models import registry
    from crmscore.monitoring.retrain import retrain as run_retrain
    from crmscore.monitoring.run import MONITORED
    from crmscore.monitoring.run import monitor as run_monitor
    from crmscore.settings import get_settings

    if (task is None) == (not all_tasks):
        raise ConfigError("give one task (e.g. `crmscore retrain churn`) or --all")
    cfg = load_config(config)
    data = load_data(cfg)
    registry.configure()
    names = [task] if task else []
    if all_tasks:
        for name in MONITORED:
            try:
                registry.resolve_version(name, registry.CHAMPION)
                names.append(name)
            except registry.RegistryError:
                continue
    home = Path(get_settings().home)
    decisions = []
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        for name in names:
            evidence = None
            if if_drifted:
                try:
                    checks = run_monitor(cfg, data, models=[name], score_files=_files(scores),
                                         prediction_log=home / "predictions.sqlite", home=home)
                except registry.RegistryError:
                    checks = []
                if checks and not checks[0].verdict["retrain"]:
                    decisions.append({"model": name, "decision": "skipped",
                                      "reason": f"monitoring found no reason to retrain (drift "
                                                f"{checks[0].verdict['drift_status']})"})
                    continue
                evidence = checks[0].verdict if checks else {"reasons": ["no champion yet"]}
            decisions.append(run_retrain(name, cfg, data, cfg.monitoring, evidence=evidence, progress=not as_json))
    if as_json:
        print(json.dumps(decisions, default=str))
        return
    for d in decisions:
        Console().print(f"{d['model']}: {d['decision']}: {d['reason']}", highlight=False)
