"""Benchmark: features and explained scoring on Spark (local[N]) against DuckDB and the in-process scorer,
on the same synthetic data, in one run.

    python bench/spark.py [--customers 1000000] [--master local[2]] [--keep DIR] [--seed 42]

1M customers give about 10M transaction lines (the issue's size). On a shared 2-core machine run smaller and
say so: `--customers 20000` (about 200k lines). Steps, each timed (wall seconds):
1. Generate the synthetic data (Parquet) and a config for it (reused from --keep DIR).
2. DuckDB: load + validate, the feature table at the cutoff (crmscore.features.build_features).
3. Train a small churn model on DuckDB (not timed as a comparison: training stays on one machine).
4. In-process scoring: crmscore.scoring.score_frame over the model's population, top 5 reasons.
5. Spark: session start, load + validate (canonical tables), the feature table written as Parquet,
   explained scoring (mapInPandas) written as Parquet.
Prints one JSON line with the timings and rows; no pass/fail goal (local[N] is no cluster: see the README).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()

    from crmscore import synthetic
    from crmscore.config import load_config

    root = args.keep or Path(tempfile.mkdtemp(prefix="crmscore-bench-spark-"))
    data_dir = root / f"data_{args.customers}_{args.seed}"
    t: dict[str, float] = {}
    start = time.perf_counter()
    if not (data_dir / "transactions.parquet").exists():
        synthetic.write(synthetic.generate(customers=args.customers, seed=args.seed), data_dir)
    t["generate"] = time.perf_counter() - start
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "training/configs/synthetic.yaml").read_text())
    for source in cfg["data"].values():
        source["path"] = str(data_dir / Path(source["path"]).name)
    cfg["validation"]["quarantine_dir"] = str(root / "quarantine")
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(root / "config.yaml")

    from crmscore.data.loader import load_customer_data
    from crmscore.features.build import build_features, feature_set_for

    def timed(name, fn):  # noqa: ANN001, ANN202
        s = time.perf_counter()
        out = fn()
        t[name] = round(time.perf_counter() - s, 2)
        print(f"{name}: {t[name]} s", file=sys.stderr, flush=True)
        return out

    duck = timed("duckdb_load", lambda: load_customer_data(config))
    lines = duck.con.execute("SELECT count(*) FROM lines").fetchone()[0]
    as_of = duck.default_as_of()
    fs = feature_set_for(duck, as_of)
    feats = timed("duckdb_features", lambda: build_features(duck, as_of, fs))

    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task
    from crmscore.scoring.batch import score_frame, transactional_population

    task = get_task("churn")
    bundle = timed("train_churn", lambda: train_task(task, config, task.settings(snapshots=2, num_boost_round=100),
                                                      data=duck, register=False).bundle)
    pop = transactional_population(bundle, duck, as_of)
    timed("inprocess_score", lambda: score_frame(bundle, pop, top_k=5))

    from crmscore.data.spark import load_customer_data_spark, spark_session
    from crmscore.features.spark import spark_features
    from crmscore.scoring.spark import score_on_spark, write_spark_scores

    spark = timed("spark_start", lambda: spark_session(args.master))
    sdata = timed("spark_load", lambda: load_customer_data_spark(config, spark))
    timed("spark_features", lambda: spark_features(sdata, as_of, fs).write.mode("overwrite").parquet(
        str(root / "features_spark")))
    timed("spark_score", lambda: write_spark_scores(score_on_spark(bundle, sdata, as_of, top_k=5),
                                                    root / "scores_spark"))
    spark.stop()
    print(json.dumps({"customers": args.customers, "lines": lines, "feature_rows": len(feats),
                      "population": len(pop), "master": args.master, "seconds": t}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
