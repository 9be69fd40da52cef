"""`crmscore demo-data` and `crmscore demo`: synthetic data and the end-to-end main job."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated

import typer

from crmscore.cli.root import app

log = logging.getLogger("crmscore")
DEMO_CONFIG = Path("training/configs/synthetic.yaml")


@app.command("demo-data")
def demo_data(
    customers: Annotated[int, typer.Option(min=10, help="Number of customers.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 42,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the Parquet files.")] = Path("data/demo"),
    start: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="First day of data.")] = dt.datetime(2023, 1, 1),
    end: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Day after the last day of data.")] = dt.datetime(2025, 1, 1),
    shift_order_hours_after: Annotated[dt.datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="Planted drift: from this day on, morning orders happen 4 hours later (only "
                                   "mean_order_hour moves).")] = None,
    churn_change_after: Annotated[dt.datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="Planted change of the churn mechanism: from this day on, customers also leave "
                                   "abruptly (mean 150 days), redeeming coupons in their last 60 days.")] = None,
    campaign: Annotated[bool, typer.Option(help="Also write a randomised campaign with planted effects to "
                                                "<out>/campaign (crmscore.synthetic.campaign).")] = True,
) -> None:
    """Write synthetic transactions, products, customers and events with documented drivers."""
    from crmscore import synthetic
    from crmscore.progress import Steps

    with Steps(5, "demo data") as steps:
        data = synthetic.generate(customers=customers, seed=seed, start=start.date(), end=end.date(),
                                  progress=steps.step)
        if shift_order_hours_after is not None:
            data = synthetic.plant_order_hour_shift(data, shift_order_hours_after.date())
        if churn_change_after is not None:
            data = synthetic.plant_churn_change(data, churn_change_after.date(), seed=seed)
        steps.step("writing")
        paths = synthetic.write(data, out)
        if campaign:  # its own folder: the files above stay as they are
            camp = synthetic.campaign(data)
            synthetic.write_campaign(camp, out / "campaign")
            log.info("campaign %r on %s: %s customers (treated and control) in %s", camp.name, camp.at.date(),
                     f"{len(camp.treatments):,}", out / "campaign")
    log.info("wrote %s transaction lines of %s customers to %s (%s)", f"{len(data.transactions):,}",
             f"{customers:,}", out, ", ".join(p.name for p in paths.values()))


@app.command("demo")
def demo(
    customers: Annotated[int, typer.Option(min=100, help="Number of synthetic customers.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's outputs.")] = Path("out/demo"),
) -> None:
    """The main job on embedded defaults: synthetic data -> checks -> features -> segments -> train, register
    and promote churn in MLflow (SQLite) -> batch scores with reasons -> train and promote next-purchase,
    expected-spend and next-category -> publish features, serve, score one customer over HTTP."""
    from crmscore.cli.common import load_data
    from crmscore.cli.features import print_segment_counts
    from crmscore.config import load_config
    from crmscore.features import build_features

    cfg = load_config(DEMO_CONFIG)
    data_dir = Path(cfg.resolve(cfg.data.transactions.path)).parent
    demo_data(customers=customers, seed=seed, out=data_dir, start=dt.datetime(2023, 1, 1),
              end=dt.datetime(2025, 1, 1), campaign=True)
    data = load_data(cfg)
    as_of = data.default_as_of()
    features = build_features(data, as_of)
    out.mkdir(parents=True, exist_ok=True)
    features.to_parquet(out / "features.parquet", index=False)
    log.info("features at %s: %s customers -> %s", as_of.date(), f"{len(features):,}", out / "features.parquet")
    print_segment_counts(features)

    from rich.console import Console

    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task
    from crmscore.scoring.batch import NEXT_PURCHASE_MODELS, score_frame, transactional_population, write_scores

    task = get_task("churn")
    result = train_task(task, cfg, task.settings(cfg.tasks.get("churn")), data=data, progress=True)
    outcome = _promote("churn")
    bundle, mv = registry.load_bundle("churn", "champion")
    scores = score_frame(bundle, transactional_population(bundle, data, as_of), top_k=3, version=str(mv.version))
    write_scores(scores, out / "churn_scores.parquet")
    console = Console()
    console.print(f"churn: ROC-AUC {result.metrics['roc_auc']:.3f} vs best baseline "
                  f"{result.metrics['best_baseline_roc_auc']:.3f} (grade {result.grade}); {outcome['message']}",
                  highlight=False)
    top = scores.sort_values("score", ascending=False).head(3)
    for _, row in top.iterrows():
        console.print(f"[bold]{row.customer_id}[/] churn risk {row.score:.0%} (decile {row.decile}, "
                      f"{row.rfm_segment}, {row.lifecycle_stage})", highlight=False)
        for reason in row.reasons:
            console.print(f"  - {reason['text']}", highlight=False)
    log.info("scores of %s customers -> %s; MLflow UI: mlflow ui --backend-store-uri %s", f"{len(scores):,}",
             out / "churn_scores.parquet", registry.configure().tracking_uri)
    # the next-purchase models too, so the service and the operations page show every kind of model
    for name in NEXT_PURCHASE_MODELS:
        t = get_task(name)
        r = train_task(t, cfg, t.settings(cfg.tasks.get(name)), data=data, progress=True)
        done = _promote(name)
        primary = t.primary_metric
        console.print(f"{name}: {primary} {r.metrics[primary]:.3f} vs best baseline "
                      f"{r.metrics.get('best_baseline_' + primary, float('nan')):.3f} (grade {r.grade}); "
                      f"{done['message']}", highlight=False)
    # a customer in the second decile: high risk with reasons that pull both ways
    pick = scores[scores["decile"] == 2]
    _serve_and_score(data, as_of, str((pick if len(pick) else top).iloc[0]["customer_id"]), out)


def _serve_and_score(data, as_of, customer_id: str, out: Path) -> None:  # noqa: ANN001
    """Publish the features, start the real BentoML service, score one customer over HTTP, stop it."""
    import json
    import secrets

    from rich.console import Console

    from crmscore.serving.launcher import LocalServer
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.settings import get_settings

    settings = get_settings()
    n, where = publish_snapshot(data, as_of, settings)
    log.info("published features of %s customers to %s", f"{n:,}", where)
    key = "crm_demo_" + secrets.token_urlsafe(16)  # for this run only; `crmscore keys create NAME` for real keys
    log.info("starting the scoring service (bentoml serve) on 127.0.0.1 ...")
    with LocalServer({"CRMSCORE_API_KEYS": key}, out / "serve.log", api_key=key) as server:
        body = {"model": "churn", "customers": [{"customer_id": customer_id}], "explain": True, "top_k": 3}
        status, _, answer = server.call("POST", "/v1/score", body)
    console = Console()
    console.print(f"\n[bold]Served by the real service[/] (stopped again):\n$ curl -s -X POST {server.url}/v1/score "
                  f"-H 'Authorization: Bearer <key>' -H 'Content-Type: application/json' -d '{json.dumps(body)}'",
                  highlight=False, soft_wrap=True)
    console.print(f"HTTP {status}", highlight=False)
    console.print_json(json.dumps(answer))
    (out / "served_answer.json").write_text(json.dumps(answer, indent=1))
    console.print(f"\nOperations page: `crmscore keys create ops` (prints a key), `crmscore serve`, then open "
                  f"http://127.0.0.1:3000/ui/customers/{customer_id} (add ?lang=zh for Chinese)", highlight=False)


def _promote(name: str) -> dict:
    """The newest demo model serves: promoted, over an earlier demo's champion if there is one."""
    from crmscore.models import registry

    if _champion_exists(name):
        return registry.promote(name, force=True, reason="crmscore demo: the newest demo model serves")
    return registry.promote(name)


def _champion_exists(name: str) -> bool:
    from mlflow.tracking import MlflowClient

    from crmscore.models import registry

    registry.configure()
    try:
        MlflowClient().get_model_version_by_alias(name, "champion")
        return True
    except Exception:  # noqa: BLE001  (no model or no alias yet)
        return False
