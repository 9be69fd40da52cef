"""Benchmark: validation quality against explanation cost over tree shapes, for the churn task.

    python bench/shapes.py synthetic [--customers 20000] [--seed 43]
    python bench/shapes.py online_retail [--as-of 2011-06-01,2011-06-15,2011-07-01]

For each (num_leaves, max_depth) shape (and learning rate) it fits the churn model on the training snapshots
and measures it on the validation snapshot only (the newest training cutoff; the test rows are never read):
ROC-AUC, trees kept by early stopping, TreeSHAP work counted from the trees (crmscore.models.explain_cost.
shap_work: sum over trees and leaves of depth squared), and the measured predict / pred_contrib / SHAP-engine microseconds
per row (best of three on up to 2,000 validation rows; a busy machine inflates both, the ratio less).

Data: `synthetic` generates a demo world with crmscore.synthetic (the generator and dates of bench/batch.py's
training base); `online_retail` reads ../shared/data with training/configs/online_retail.yaml at development
as-of dates (its held-back last quarter is not in the copy, and the as-of dates end before every test cutoff of
bench/quality.py). Its figures chose the churn shape pinned in training/configs/synthetic.yaml (see the
comment there and the README's Performance section).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(15, 5), (7, 3), (4, 3), (4, 2), (3, 2)]


def _features_bench():
    spec = importlib.util.spec_from_file_location("bench_features", Path(__file__).with_name("features.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def measure(config: Path, as_of: str | None, shapes: list[tuple[int, int]], rates: list[float | None],
            threads: int) -> list[dict]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from crmscore.config import load_config
    from crmscore.data.loader import load_customer_data
    from crmscore.models.estimator import CustomerModel
    from crmscore.models.explain_cost import explain_cost
    from crmscore.models.pipeline import transactional_dataset
    from crmscore.models.tasks import get_task

    cfg = load_config(config)
    task = get_task("churn")
    s = task.settings(cfg.tasks.get("churn"))
    data = load_customer_data(cfg)
    ds = transactional_dataset(task, data, s, as_of)
    s = ds.settings or s
    X, y, Xv, yv = ds.train[ds.features], ds.train["label"], ds.valid[ds.features], ds.valid["label"]
    print(f"  {len(X):,} training rows, {len(Xv):,} validation rows (positives {float(np.mean(yv)):.1%}), "
          f"{len(ds.features)} features; validation cutoff {ds.cutoffs['train'][-1]}", flush=True)
    rows = []
    for rate in rates:
        for leaves, depth in shapes:
            params = {**s.params, "num_leaves": leaves, "max_depth": depth, "num_threads": threads}
            if rate is not None:
                params["learning_rate"] = rate
            t = time.perf_counter()
            m = CustomerModel(task.objective, params, s.num_boost_round, calibrate=False).fit(X, y, Xv, yv)
            fit_s = time.perf_counter() - t
            auc = float(roc_auc_score(np.asarray(yv, dtype=float), m.decision_function(Xv)))
            cost = explain_cost(m, Xv)
            rows.append({"leaves": leaves, "depth": depth, "rate": params.get("learning_rate", 0.05), "auc": auc,
                         "trees": m.best_iteration_, "fit_s": fit_s, **cost})
            r = rows[-1]
            print(f"  {leaves:>3}x{depth:<2} lr {r['rate']:<5} AUC {auc:.4f}  trees {r['trees']:>4}  work "
                  f"{r['shap_work']:>8.0f}  predict {r['predict_us']:>6.2f} us  pred_contrib {r['pred_contrib_us']:>7.2f} "
                  f"us ({r['pred_contrib_to_predict']:.1f}x)  SHAP by {r['shap_engine']} {r['engine_us']:>7.2f} us "
                  f"({r['engine_to_predict']:.2f}x)  fit {fit_s:.1f} s", flush=True)
    data.con.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", choices=("synthetic", "online_retail"))
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=43, help="bench/batch.py trains on seed + 1 = 43 by default.")
    ap.add_argument("--as-of", default="2011-06-01,2011-06-15,2011-07-01", help="online_retail: as-of dates.")
    ap.add_argument("--shapes", default=",".join(f"{a}x{b}" for a, b in SHAPES))
    ap.add_argument("--rates", default="", help="Learning rates to try besides the config's (comma-separated).")
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="LightGBM threads (1: far steadier on a busy shared machine; "
                    "at 2 threads the trees can differ slightly: 203 trees against 184 for 15x5 on synthetic, same AUC).")
    args = ap.parse_args(argv)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    rates: list[float | None] = [None] + [float(r) for r in args.rates.split(",") if r]
    os.environ.setdefault("CRMSCORE_HOME", tempfile.mkdtemp(prefix="crmscore-shapes-"))
    results: dict[str, list[dict]] = {}
    if args.world == "synthetic":
        fbench = _features_bench()
        folder = args.keep or Path(tempfile.mkdtemp(prefix="crmscore-shapes-"))
        folder.mkdir(parents=True, exist_ok=True)
        fbench._prepare(folder, args.customers, args.seed)
        print(f"synthetic world: {args.customers:,} customers, seed {args.seed}", flush=True)
        results["synthetic"] = measure(fbench._config(folder), None, shapes, rates, args.threads)
    else:
        os.chdir(ROOT)  # the config's paths are relative to the checkout (../shared/data)
        for as_of in args.as_of.split(","):
            print(f"online_retail, as of {as_of}", flush=True)
            results[as_of] = measure(ROOT / "training/configs/online_retail.yaml", as_of, shapes, rates, args.threads)
    print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    # the summary: per shape, mean validation AUC over the runs and work relative to the first shape
    keys = [(r["leaves"], r["depth"], r["rate"]) for r in next(iter(results.values()))]
    first = keys[0]
    print(f"\n{'shape':<16}{'mean AUC':>10}{'vs first':>10}{'work':>10}{'work / first':>14}{'contrib/predict':>16}"
          f"{'SHAP/predict':>14}  engine")
    for key in keys:
        runs = [next(r for r in rs if (r["leaves"], r["depth"], r["rate"]) == key) for rs in results.values()]
        base = [next(r for r in rs if (r["leaves"], r["depth"], r["rate"]) == first) for rs in results.values()]
        auc = sum(r["auc"] for r in runs) / len(runs)
        auc0 = sum(r["auc"] for r in base) / len(base)
        work = sum(r["shap_work"] for r in runs) / len(runs)
        work0 = sum(r["shap_work"] for r in base) / len(base)
        ratio = sum(r["engine_to_predict"] for r in runs) / len(runs)
        contrib = sum(r["pred_contrib_to_predict"] for r in runs) / len(runs)
        print(f"{key[0]:>3}x{key[1]:<2} lr {key[2]:<6}{auc:>10.4f}{auc - auc0:>+10.4f}{work:>10.0f}"
              f"{work / work0:>14.3f}{contrib:>15.1f}x{ratio:>13.2f}x  {runs[0]['shap_engine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
