"""Benchmark: features and explained scoring on Spark (local[N]) against DuckDB and the in-process scorer,
on the same synthetic data, in one run.

    python bench/spark.py [--customers 1000000] [--master local[2]] [--keep DIR] [--seed 42]

1M customers give about 10M transaction lines (the issue's size). On a shared 2-core machine run smaller and
say so: `--customers 20000` (about 200k lines). Steps, each timed (wall seconds):
1. Generate the synthetic data (Parquet) and a config for it (reused from --keep DIR).
2. DuckDB: load + validate, the feature table at the cutoff (crmscore.features.build_features).
3. The churn training set on DuckDB (rows, pandas bytes), then a small churn model trained from it, with the
   process's peak resident memory before and after (training stays on one machine: its size is what to know).
4. In-process scoring: crmscore.scoring.score_frame over the model's population, top 5 reasons.
5. Spark: session start, load + validate (canonical tables), the feature table written as Parquet,
   explained scoring (mapInArrow) written as Parquet, the churn training set written as Parquet by Spark.
Prints one JSON line with the timings and rows; no pass/fail goal (local[N] is no cluster: see the README).
"""

from __future__ import annotations

import argparse
import json
import resource
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
    ap.add_argument("--no-training-set", action="store_true", help="Skip writing the training set on Spark.")
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
    settings = task.settings(snapshots=2, num_boost_round=100)
    # one-machine training's size: the stacked training set (rows, bytes in pandas) and the process's peak
    # resident memory before and after training (ru_maxrss: the training's peak shows when it is the highest)
    from crmscore.models.pipeline import transactional_dataset

    ds = timed("duckdb_training_set", lambda: transactional_dataset(task, duck, settings))
    train_rows = len(ds.train) + len(ds.valid) + len(ds.test)
    train_bytes = sum(int(f.memory_usage(deep=True).sum()) for f in (ds.train, ds.valid, ds.test))
    del ds
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    bundle = timed("train_churn", lambda: train_task(task, config, settings, data=duck, register=False).bundle)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
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
    if not args.no_training_set:
        from crmscore.features.spark import spark_training_set, write_table
        from crmscore.models.pipeline import training_plan

        def training_set_on_spark():  # noqa: ANN202
            cut, fs_t, label, _, _ = training_plan(task, sdata, settings)
            write_table(spark_training_set(sdata, [*cut["train"], cut["test"]], label, fs_t),
                        str(root / "training_set_spark"))

        timed("spark_training_set", training_set_on_spark)
    spark.stop()
    print(json.dumps({"customers": args.customers, "lines": lines, "feature_rows": len(feats),
                      "feature_columns": feats.shape[1], "population": len(pop), "master": args.master,
                      "training_rows": train_rows, "training_set_mb": round(train_bytes / 2**20, 1),
                      "peak_rss_mb_before_training": round(rss_before / 2**20), "peak_rss_mb_after_training":
                      round(rss_peak / 2**20), "seconds": t}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
