"""Uplift on the two shared experiments: out-of-sample AUUC and Qini of the uplift model (the learner chosen per
split among crmscore.models.uplift_learner.METHODS by the task's `selection`, out-of-fold over the training and
validation rows by default; never the test rows) against random targeting,
targeting by purchase probability and by churn score (the least likely to buy first).

    python bench/uplift_experiments.py [--data ../shared/data/uplift] [--boot 200] [--json out.json]
                                       [--selection out_of_fold|validation]

- Lenta SMS sample (50,000 rows, 3 features: food_share_15d, age, is_women): no customer id, so the row number
  is one; the uplift task's stratified split (60/20/20 by treatment and outcome, seed 17) gives the held-out
  test rows.
- Starbucks promotion: trained on `starbucks_training` (its own 60/20/20 split: train, validation for early
  stopping; its 20% test part is unused), measured on `starbucks_test` (41,650 customers never seen).
Both go through crmscore's uplift task as a ready experiment table (data.features with `treatment`), the same
dataset and fit code as `crmscore train uplift` (no MLflow). A bootstrap over the test rows (--boot resamples)
gives a 90% interval of the model's AUUC minus the purchase-probability baseline's.

These are test beds, not evidence of real-world lift (see ../shared/data/README.md: the Lenta file is a sample
with derived columns; Starbucks' own course material calls its experiment simulated).
With --seeds N every experiment runs on N splits (seeds 17, 18...), and the means decide.
Exit status 0 when on both the model's mean AUUC is above random and above targeting by purchase probability.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def _config(tmp: Path, path: Path, id_col: str, label: str, treatment: str, treated_value: object) -> Path:
    cfg = {"name": path.stem, "data": {"features": {"path": str(path), "id": id_col, "label": label, "positive": 1,
                                                   "treatment": treatment, "treated_value": treated_value}},
           "validation": {"quarantine_dir": str(tmp / "q")}}
    out = tmp / f"{path.stem}.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def _run(name: str, cfg_path: Path, test_path: Path | None, boot: int, seed: int, selection: str) -> dict:
    from crmscore.config import load_config
    from crmscore.models.feature_table import load_feature_table
    from crmscore.models.pipeline import fit_and_evaluate
    from crmscore.models.tasks import get_task
    from crmscore.models.uplift_evaluation import uplift_metrics

    cfg = load_config(cfg_path)
    task = get_task(f"uplift-{name}")
    s = task.settings({"seed": seed, "selection": selection})
    ds = task.dataset(task, cfg, None, s, None, False)
    if test_path is not None:  # a separate file of customers never seen in training
        test_cfg = load_config(_config(cfg_path.parent, test_path, "ID", "purchase", "Promotion", "Yes"))
        ds.test = load_feature_table(test_cfg, schema=ds.table_schema).frame
    t0 = time.perf_counter()
    bundle, metrics, base, curves = fit_and_evaluate(task, ds, s)
    seconds = time.perf_counter() - t0
    y, t = ds.test["label"].to_numpy(float), ds.test["treated"].to_numpy(float)
    lift, purchase = curves["scores"]["model"], curves["baselines"]["purchase probability"]
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(boot):
        i = rng.integers(0, len(y), len(y))
        diffs.append(uplift_metrics(y[i], t[i], lift[i])["auuc"] - uplift_metrics(y[i], t[i], purchase[i])["auuc"])
    lo, hi = (np.quantile(diffs, [0.05, 0.95]) if diffs else (np.nan, np.nan))
    return {"experiment": name, "seed": seed, "train_rows": len(ds.train), "test_rows": len(ds.test), "fit_seconds": round(seconds, 1),
            "method": bundle.info.get("uplift_method"), "selection": selection,
            "selection_auuc": {k.removeprefix(f"{selection}_auuc_"): v for k, v in metrics.items()
                               if k.startswith(f"{selection}_auuc_")},
            "selection_gap_se": {k.removeprefix(f"{selection}_gap_se_"): v for k, v in metrics.items()
                                 if k.startswith(f"{selection}_gap_se_")},
            "ate": metrics["ate"], "auuc": metrics["auuc"], "auuc_random": metrics["auuc_random"],
            "qini": metrics["qini"], "lift_at_30pct": metrics["lift_at_share"],
            "baselines": {k: {"auuc": v["auuc"], "qini": v["qini"], "lift_at_30pct": v["lift_at_share"]}
                          for k, v in base.items()},
            "auuc_minus_purchase_90ci": [float(lo), float(hi)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/uplift")
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--seeds", type=int, default=5, help="Splits (seeds 17, 18...): Lenta's test rows and both "
                    "experiments' train/validation split change with the seed.")
    ap.add_argument("--only", choices=("lenta", "starbucks"), help="Run one experiment (the exit status then "
                    "judges that one).")
    ap.add_argument("--selection", choices=("out_of_fold", "validation"), default="out_of_fold",
                    help="Where the learners' AUUC is measured to choose one (tasks.uplift.selection).")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"{args.data} is absent (the team's shared data); nothing to measure")
        return 1
    from crmscore.models.uplift_learner import METHODS

    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lenta = pd.read_parquet(args.data / "lenta_sample.parquet")
        lenta.insert(0, "row_id", np.arange(1, len(lenta) + 1))
        lenta.to_parquet(tmp / "lenta.parquet", index=False)
        for seed in range(17, 17 + args.seeds):
            if args.only in (None, "lenta"):
                results.append(_run("lenta", _config(tmp, tmp / "lenta.parquet", "row_id", "response_att",
                                                     "is_treatment", 1), None, args.boot, seed, args.selection))
            if args.only in (None, "starbucks"):
                results.append(_run("starbucks", _config(tmp, args.data / "starbucks_training.parquet", "ID",
                                                         "purchase", "Promotion", "Yes"),
                                    args.data / "starbucks_test.parquet", args.boot, seed, args.selection))
    ok = True
    for r in results:
        p = r["baselines"]["purchase probability"]
        chose = ", ".join(f"{k} {v:.4f} (gap +-{r['selection_gap_se'].get(k, 0):.4f})"
                          for k, v in r["selection_auuc"].items())
        print(f"{r['experiment']} (seed {r['seed']}): {r['selection']} AUUC {chose} -> {r['method']}; "
              f"{r['test_rows']:,} test rows, average effect {r['ate']:+.4f}; AUUC "
              f"model {r['auuc']:.4f}, random {r['auuc_random']:.4f}, purchase probability {p['auuc']:.4f}, churn score "
              f"{r['baselines']['churn score']['auuc']:.4f}; Qini model {r['qini']:.4f}, purchase probability "
              f"{p['qini']:.4f}; lift in the top 30%: model {r['lift_at_30pct']:+.4f}, purchase probability "
              f"{p['lift_at_30pct']:+.4f}; AUUC model - purchase 90% bootstrap interval "
              f"[{r['auuc_minus_purchase_90ci'][0]:+.4f}, {r['auuc_minus_purchase_90ci'][1]:+.4f}]; fit "
              f"{r['fit_seconds']} s")
    for name in ("lenta", "starbucks"):
        rs = [r for r in results if r["experiment"] == name]
        if not rs:
            continue
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("auuc", "auuc_random")}
        purchase = float(np.mean([r["baselines"]["purchase probability"]["auuc"] for r in rs]))
        chosen = ", ".join(f"{m} {sum(r['method'] == m for r in rs)}" for m in METHODS if any(r['method'] == m for r in rs))
        wins = sum(r["auuc"] > r["baselines"]["purchase probability"]["auuc"] for r in rs)
        good = mean["auuc"] > mean["auuc_random"] and mean["auuc"] > purchase
        ok &= good
        print(f"{name}: mean over {len(rs)} splits: AUUC model {mean['auuc']:.4f}, random {mean['auuc_random']:.4f}, "
              f"purchase probability {purchase:.4f}; model above purchase probability in {wins} of {len(rs)}; chose {chosen} -> "
              f"{'PASS' if good else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
