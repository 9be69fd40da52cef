"""Is the monitoring promotion robust? `retrain` on the planted churn change at several seeds and tree counts,
and on the unchanged world, with the paired-bootstrap interval of each comparison.

    python bench/monitoring_promotion.py [--seeds 11 42 7] [--trees 40 80] [--customers 5000] [--out FILE.json]

For each seed: the synthetic world of tests/test_monitoring.py (`--customers` customers, 2019-01-01 to
2025-01-01) unchanged and with `crmscore.synthetic.plant_churn_change` from 2024-01-01. For each tree count:
churn (60-day horizon, 3 snapshots) trained on the unchanged data as of 2024-01-01 and promoted (the
champion: both worlds share every row before that day); its realised ROC-AUC on the 2024-02-01 scores of
both worlds; then `retrain` (a challenger trained as of the end of the data, compared with the champion on
its out-of-time test rows by a paired bootstrap) in the changed world and, with the champion put back, in the
unchanged one.

Bar (issue 17): the changed world promotes and the unchanged one does not, at every seed and tree count.
A private MLflow store in a temporary folder; nothing outside it is written except --out. Exit status 0
when every bar holds, 1 otherwise. The load average is printed: other work on the machine slows it, not
the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
CHANGE = "2024-01-01"
FIRST_SCORES = "2024-02-01"


def world_config(root: Path, name: str, data) -> Path:
    """The shipped synthetic config pointed at `data` written under root/name (churn: 60-day horizon)."""
    from crmscore import synthetic
    from crmscore.config import config_on_folder

    synthetic.write(data, root / name)
    return config_on_folder(REPO / "training" / "configs" / "synthetic.yaml", root / name,
                            {"churn": {"horizon_days": 60, "snapshots": 3}})


def realised_roc_auc(bundle, version: str, data) -> float:
    """The champion's realised ROC-AUC of its scores at FIRST_SCORES (their horizon has passed)."""
    import pandas as pd

    from crmscore.monitoring.realised import realised_performance
    from crmscore.scoring.batch import score_frame, transactional_population

    scores = score_frame(bundle, transactional_population(bundle, data, FIRST_SCORES), top_k=0, version=version)
    scores["as_of"] = pd.Timestamp(FIRST_SCORES)
    scores = scores.rename(columns={"rfm_segment": "segment"})
    return realised_performance("churn", scores, data, {version: bundle.settings}).overall(version)["roc_auc"]


def run_seed(seed: int, trees: list[int], customers: int, root: Path) -> list[dict]:
    from mlflow.tracking import MlflowClient

    from crmscore import synthetic
    from crmscore.config import load_config
    from crmscore.data.loader import load_customer_data
    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task
    from crmscore.monitoring.retrain import retrain

    os.environ.update({"CRMSCORE_TRACKING_URI": f"sqlite:///{root / f'mlflow-{seed}.db'}",
                       "CRMSCORE_ARTIFACT_LOCATION": str(root / f"mlruns-{seed}")})
    plain = synthetic.generate(customers, seed=seed, start="2019-01-01", end="2025-01-01")
    worlds = {"changed": synthetic.plant_churn_change(plain, CHANGE, seed=seed), "unchanged": plain}
    loaded = {}
    for name, data in worlds.items():
        cfg = load_config(world_config(root / str(seed), name, data))
        loaded[name] = (cfg, load_customer_data(cfg))
    task = get_task("churn")
    rows = []
    for n in trees:
        started = time.perf_counter()
        cfg, data = loaded["unchanged"]
        champion = train_task(task, cfg, task.settings(cfg.tasks["churn"], num_boost_round=n), as_of=CHANGE,
                              data=data)
        version = str(champion.version)
        realised = {name: realised_roc_auc(champion.bundle, version, d) for name, (_, d) in loaded.items()}
        for name in ("changed", "unchanged"):
            registry.configure()
            MlflowClient().set_registered_model_alias("churn", registry.CHAMPION, version)
            cfg, data = loaded[name]
            decision = retrain("churn", cfg, data, cfg.monitoring, settings_overrides={"num_boost_round": n})
            fig = decision["figures"]
            row = {"seed": seed, "trees": n, "world": name, "decision": decision["decision"],
                   "champion_test_roc_auc": round(champion.bundle.info["metrics"]["roc_auc"], 4),
                   "realised_roc_auc_first_scores": round(realised[name], 4),
                   "challenger": round(fig["challenger"], 4), "champion": round(fig["champion"], 4),
                   "difference": round(fig["difference"], 4), "interval": [round(fig["interval_low"], 4),
                                                                           round(fig["interval_high"], 4)],
                   "rows": fig["rows"], "test_cutoff": decision["test_cutoff"],
                   "bar": "PASS" if (decision["decision"] == "promoted") == (name == "changed") else "FAIL",
                   "seconds": round(time.perf_counter() - started, 1)}
            rows.append(row)
            print(f"seed {seed:>3} trees {n:>3} {name:<9} {row['decision']:<8} {row['challenger']:.3f} vs "
                  f"{row['champion']:.3f} on {row['rows']} customers ({row['test_cutoff']}), 95% interval "
                  f"[{row['interval'][0]:+.3f}, {row['interval'][1]:+.3f}]; champion's realised ROC-AUC at "
                  f"{FIRST_SCORES} {row['realised_roc_auc_first_scores']:.3f}  {row['bar']}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 42, 7])
    ap.add_argument("--trees", type=int, nargs="+", default=[40, 80])
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="crmscore-bench-monitoring-") as tmp:
        for seed in args.seeds:
            rows += run_seed(seed, args.trees, args.customers, Path(tmp))
    print(f"load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    failed = [r for r in rows if r["bar"] == "FAIL"]
    print("all bars hold" if not failed else f"{len(failed)} of {len(rows)} bars fail")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
