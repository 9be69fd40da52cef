"""Spark gives the answers DuckDB gives: the dialect's helpers, every feature column, and explained scores.

All tests share one local[2] session (the `spark` fixture; skipped with the reason when PySpark or Java is
absent). Data is kept small: the point is the SQL's meaning on each engine, not scale (bench/spark.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from crmscore.features.dialect import DUCKDB, SPARK

pytestmark = pytest.mark.spark

ZONE = "America/New_York"  # DST: 2024-03-10 02:00 does not exist, 2024-11-03 01:00-02:00 happens twice
CUTOFFS = ["2024-03-10", "2024-07-01", "2024-11-04"]


def assert_same_table(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Same columns and ids, same nulls, numbers within 1e-9, strings equal, column by column."""
    assert list(spark.columns) == list(duck.columns)
    assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
    for col in duck.columns:
        a, b = duck[col], spark[col]
        assert (a.isna().to_numpy() == b.isna().to_numpy()).all(), f"{col}: nulls differ"
        if a.dtype.kind in "fiub":
            x, y = a.to_numpy(float), b.to_numpy(float)
            ok = np.isclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True)
            assert ok.all(), f"{col}: {x[~ok][:3]} (DuckDB) vs {y[~ok][:3]} (Spark)"
        else:
            assert a.dropna().astype(str).tolist() == b.dropna().astype(str).tolist(), f"{col}: strings differ"


def test_dialect_helpers_agree_over_a_grid_of_timestamps(spark):
    """Day differences, weekend, hour and the cutoff literal, for wall times across DST gaps and folds, leap
    days, year ends and every weekday, on both engines."""
    import duckdb

    start = pd.Timestamp("2023-12-28 00:00:00")
    grid = [start + pd.Timedelta(minutes=int(m)) for m in np.arange(0, 60 * 24 * 10, 97)]  # 10 days, odd steps
    grid += [pd.Timestamp(t) for t in ("2024-02-29 23:59:59.999999", "2024-03-10 02:30:00", "2024-03-10 03:00:00",
                                       "2024-11-03 01:30:00", "2024-11-03 01:59:59", "2024-12-31 23:59:59",
                                       "2025-01-01 00:00:00", "1999-12-31 12:00:00.5")]
    cuts = [pd.Timestamp("2024-03-10"), pd.Timestamp("2025-01-01 00:00:00")]
    text = pd.DataFrame({"t": [g.isoformat(sep=" ") for g in grid]})

    def query(d):
        cols = ", ".join(f"{d.age_days('ts', d.timestamp(c))} AS age_{i}" for i, c in enumerate(cuts))
        return (f"SELECT t, {cols}, {d.is_weekend('ts')} AS weekend, {d.hour('ts')} AS hour, "
                f"ts < {d.timestamp(cuts[0])} AS before FROM grid")

    con = duckdb.connect()
    con.register("raw", text)
    con.execute("CREATE VIEW grid AS SELECT t, CAST(t AS TIMESTAMP) AS ts FROM raw")
    duck = con.execute(query(DUCKDB) + " ORDER BY t").df()
    spark.createDataFrame(text).selectExpr("t", "CAST(t AS TIMESTAMP_NTZ) AS ts").createOrReplaceTempView("grid")
    on_spark = spark.sql(query(SPARK)).toPandas().sort_values("t").reset_index(drop=True)
    assert_same_table(duck.rename(columns={"t": "customer_id"}), on_spark.rename(columns={"t": "customer_id"}))
    # and they are right, not just equal: pandas' own weekday and day arithmetic
    expected = [(cuts[0] - g).total_seconds() / 86400 for g in sorted(grid, key=lambda g: g.isoformat(sep=" "))]
    assert np.allclose(on_spark["age_0"], expected, rtol=0, atol=1e-9)
    assert on_spark["weekend"].tolist() == [pd.Timestamp(t).dayofweek >= 5 for t in on_spark["t"]]


@pytest.fixture(scope="module")
def edge_config(tmp_path_factory):
    """Synthetic customers plus edge cases, as CSV with text timestamps (naive and with offsets) in a zone with
    DST: weekend and DST-gap orders, refunds, a refund-only order, a prospect with null attributes, a line
    without an order id or known product, ids padded with non-ASCII spaces, and one unparseable amount
    (quarantined by both engines)."""
    from crmscore import synthetic

    tmp = tmp_path_factory.mktemp("spark_edge")
    tables = synthetic.generate(customers=400, seed=11)
    lines = tables.transactions.copy()
    lines["ts"] = lines["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
    lines["amount"] = lines["amount"].map(repr)
    edge = pd.DataFrame([
        # customer, ts (text), amount, order, product
        ("E1", "2024-03-08 22:00:00", "10.5", "E1a", "P00001"),      # Friday night
        ("E1", "2024-03-09 23:30:00", "20", "E1b", "P00002"),        # Saturday
        ("E1", "2024-03-10 02:30:00", "5", "E1c", "P00003"),         # a wall time DST skips, on the cutoff's day
        ("E1", "2024-03-10T07:30:00Z", "7.25", "E1d", "P00001"),     # UTC offset: 03:30 local
        ("E1", "2024-11-03T01:30:00-04:00", "3", "E1e", "P00002"),   # the fold, first pass (EDT)
        ("E1", "2024-11-03T01:30:00-05:00", "4", "E1f", "P00002"),   # the fold, second pass (EST)
        ("E2", "2024-02-01 12:00:00", "50", "E2a", "P00004"),
        ("E2", "2024-02-01 12:00:00", "-20", "E2a", "P00005"),       # a refund line in a purchase
        ("E2", "2024-02-10 09:00:00", "-15", "E2b", "P00004"),       # a refund-only order
        ("E4", "2024-06-30 23:59:59", "12", None, "P99999"),         # no order id, unknown product
        ("E4", "2024-06-30 23:59:59", "1", None, "P00001"),
        ("E5", "2024-05-05 05:05:05", "n/a", "E5a", "P00001"),       # not a number: quarantined
        ("\u00a0E2", "2024-04-01 10:00:00", "6", "E2c\u3000", "P00001"),  # ids padded with Unicode spaces: E2, E2c
    ], columns=["customer_id", "ts", "amount", "order_id", "product_id"])
    edge["quantity"], edge["channel"], edge["store_id"] = 1, "web", None
    pd.concat([lines, edge], ignore_index=True).to_csv(tmp / "transactions.csv", index=False)
    customers = tables.customers.copy()
    extra = pd.DataFrame({"customer_id": ["E1", "E2", "E3", "E4"],
                          "signup_ts": pd.to_datetime(["2023-06-01", "2023-06-02", "2024-01-05 10:00:00", None], format="ISO8601"),
                          "region": [None, "north", None, "west"], "age_band": ["25-34", None, None, None],
                          "email_opt_in": [True, False, None, True]})
    customers = pd.concat([customers, extra], ignore_index=True)
    customers["email_opt_in"] = customers["email_opt_in"].astype("boolean")
    customers.to_parquet(tmp / "customers.parquet", index=False)
    tables.products.to_parquet(tmp / "products.parquet", index=False)
    tables.events.to_parquet(tmp / "events.parquet", index=False)
    cfg = {"name": "edge", "timezone": ZONE,
           "data": {"transactions": {"path": str(tmp / "transactions.csv")},
                    "products": {"path": str(tmp / "products.parquet")},
                    "customers": {"path": str(tmp / "customers.parquet"),
                                  "attributes": ["region", "age_band", "email_opt_in"]},
                    "events": {"path": str(tmp / "events.parquet")}},
           "validation": {"quarantine_dir": str(tmp / "quarantine"), "max_bad_share": 0.5}}
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "config.yaml"


@pytest.fixture(scope="module")
def both_engines(edge_config, spark):
    from crmscore.config import load_config
    from crmscore.data.loader import load_customer_data
    from crmscore.data.spark import load_customer_data_spark

    cfg = load_config(edge_config)
    return load_customer_data(cfg), load_customer_data_spark(cfg, spark)


def test_canonical_tables_and_quarantine_match(both_engines):
    duck, on_spark = both_engines
    for name, rep in duck.reports.items():
        assert (on_spark.reports[name].rows_read, on_spark.reports[name].rows_bad) == (rep.rows_read, rep.rows_bad)
    assert duck.reports["transactions"].rows_bad == 1
    assert [(i.column, i.problem, i.rows) for i in on_spark.reports["transactions"].issues] == \
        [("amount", "are not numbers", 1)]
    q = pd.read_parquet(on_spark.reports["transactions"].quarantine_path)
    assert q["customer_id"].tolist() == ["E5"] and q["_value"].tolist() == ["n/a"]
    assert on_spark.attributes == duck.attributes
    order = "ORDER BY customer_id, ts, amount, order_key, category"
    a = duck.con.execute(f"SELECT customer_id, CAST(ts AS VARCHAR) AS ts, amount, order_key, category FROM lines {order}").df()
    b = on_spark.sql(f"SELECT customer_id, CAST(ts AS STRING) AS ts, amount, order_key, category FROM lines {order}").toPandas()
    assert a.astype(str).values.tolist() == b.astype(str).values.tolist()
    # the padded ids lost their U+00A0 and U+3000 on Spark too (its own TRIM strips only the ASCII space)
    assert b.loc[b["order_key"] == "E2c", "customer_id"].tolist() == ["E2"]


@pytest.mark.parametrize("as_of", CUTOFFS)
def test_every_feature_column_matches_duckdb(both_engines, as_of):
    from crmscore.features.build import build_features, feature_set_for
    from crmscore.features.spark import collect_features, spark_features

    duck, on_spark = both_engines
    fs = feature_set_for(duck, CUTOFFS[0])
    assert feature_set_for(on_spark, CUTOFFS[0]) == fs  # the same vocabulary, discovered on Spark
    expected = build_features(duck, as_of, fs)
    got = collect_features(spark_features(on_spark, as_of, fs))
    assert_same_table(expected, got)
    assert {"E1", "E2", "E3"} <= set(got["customer_id"]) or as_of == CUTOFFS[0]


@pytest.mark.parametrize("task_name", ["churn", "next-purchase"])
def test_spark_scores_equal_crmscore_score(both_engines, tmp_path, task_name):
    """mapInArrow scoring gives `crmscore score`'s rows: same customers, scores, deciles, segments, lifecycle
    stages, contributions and reason texts (next-purchase: also days_to_next and its interval)."""
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task
    from crmscore.scoring.batch import score_frame, transactional_population
    from crmscore.scoring.spark import score_on_spark, write_spark_scores

    duck, on_spark = both_engines
    task = get_task(task_name)
    bundle = train_task(task, duck.config, task.settings(snapshots=2, num_boost_round=30), data=duck,
                        register=False).bundle
    as_of = duck.default_as_of()
    expected = score_frame(bundle, transactional_population(bundle, duck, as_of), top_k=3, version="7")
    expected = expected.rename(columns={"rfm_segment": "segment"}).sort_values("customer_id").reset_index(drop=True)
    write_spark_scores(score_on_spark(bundle, on_spark, as_of, top_k=3, version="7"), tmp_path / "scores")
    got = pd.read_parquet(tmp_path / "scores").sort_values("customer_id").reset_index(drop=True)
    assert got["customer_id"].tolist() == expected["customer_id"].tolist() and len(got) > 100
    assert sorted(got.columns) == sorted(expected.columns)
    assert task_name == "churn" or "days_to_next" in got
    for col in expected.columns.drop(["customer_id", "reasons"]):
        if expected[col].dtype.kind == "f":
            assert np.allclose(got[col], expected[col], rtol=0, atol=1e-12, equal_nan=True), col
        else:
            assert got[col].astype(str).tolist() == expected[col].astype(str).tolist(), col
    for mine, theirs in zip(got["reasons"], expected["reasons"], strict=True):
        assert [r["feature"] for r in mine] == [r["feature"] for r in theirs]
        assert np.allclose([r["contribution"] for r in mine], [r["contribution"] for r in theirs], rtol=0, atol=1e-12)
        assert [r["text"] for r in mine] == [r["text"] for r in theirs]


def test_training_set_written_on_spark_equals_duckdb(both_engines, tmp_path):
    """The churn task's training set (its cutoffs' features and labels, stacked) built and written to Parquet by
    Spark, without collecting it: the same rows, cutoffs, labels and features as build_training_set on DuckDB."""
    from crmscore.features.build import build_training_set
    from crmscore.features.spark import spark_training_set, write_table
    from crmscore.models.pipeline import training_plan
    from crmscore.models.tasks import get_task

    duck, on_spark = both_engines
    task = get_task("churn")
    s = task.settings(snapshots=2)
    cut, fs, label, _, _ = training_plan(task, duck, s)
    assert training_plan(task, on_spark, s)[0] == cut
    cutoffs = [cut["train"][-1], cut["test"]]  # two of the task's cutoffs: stacking shows with two, and each costs
    expected = build_training_set(duck, cutoffs, label, fs)
    write_table(spark_training_set(on_spark, cutoffs, label, fs), str(tmp_path / "training_set"))
    got = pd.read_parquet(tmp_path / "training_set")
    assert len(expected) > 100 and expected["as_of"].nunique() == len(cutoffs)
    key = ["as_of", "customer_id"]
    a, b = (f.sort_values(key, ignore_index=True) for f in (expected, got))
    assert b["as_of"].astype("datetime64[ns]").tolist() == a["as_of"].astype("datetime64[ns]").tolist()
    assert_same_table(a.drop(columns="as_of"), b.drop(columns="as_of"))


def test_spark_publish_is_seen_only_once_complete(both_engines, redis_url, monkeypatch):
    """Publishing from Spark writes every customer's features to Redis in partitions under a new version:
    readers keep the old snapshot while the partitions write, then see all the new rows and none of the old."""
    import json

    from crmscore.features.build import build_features, feature_set_for
    from crmscore.features.store import RedisStore, rows_as_json
    from crmscore.scoring import spark_publish
    from crmscore.settings import Settings

    duck, on_spark = both_engines
    as_of = CUTOFFS[2]
    reader = RedisStore(redis_url, version_ttl=0)
    reader.publish(pd.DataFrame({"customer_id": ["OLD1", "E1"], "x": [1.0, 2.0]}), {"as_of": "old"})
    seen_before_switch = {}
    switch = spark_publish.StagedSnapshot.switch

    def look_then_switch(staged, meta):  # the real switch, after a reader's look at the staged state
        seen_before_switch.update(meta=reader.meta(), rows=reader.get_many(["OLD1", "E1", "E2"]), staged=staged.rows)
        switch(staged, meta)

    monkeypatch.setattr(spark_publish.StagedSnapshot, "switch", look_then_switch)
    settings = Settings(redis_url=redis_url)
    n, _ = spark_publish.publish_snapshot_on_spark(on_spark, as_of, settings, served=[])
    assert seen_before_switch["meta"]["as_of"] == "old"
    assert seen_before_switch["rows"] == {"OLD1": {"x": 1.0}, "E1": {"x": 2.0}}
    expected = build_features(duck, as_of, feature_set_for(duck, as_of))
    assert n == seen_before_switch["staged"] == len(expected)
    got = reader.get_many(expected["customer_id"].astype(str).tolist() + ["OLD1"])
    assert sorted(got) == sorted(expected["customer_id"].astype(str))  # all new rows, OLD1 gone
    for cid, row in rows_as_json(expected):
        want, have = json.loads(row), got[cid]
        assert set(have) == set(want), cid
        for k, v in want.items():
            assert (have[k] == v) if not isinstance(v, float) else abs(have[k] - v) <= 1e-9 * max(1, abs(v)), (cid, k)
    meta = reader.meta()
    assert meta["as_of"] == str(pd.Timestamp(as_of)) and meta["customers"] == len(expected)
    assert meta["segments"]["rfm"] == {k: int(v) for k, v in expected["rfm_segment"].value_counts().items()}
    assert meta["segments"]["lifecycle"] == {k: int(v) for k, v in expected["lifecycle_stage"].value_counts().items()}
