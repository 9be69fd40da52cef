"""The shipped Complete Journey config on the team's real data (../shared/data; skipped elsewhere).

Runs from the repo root, as the config's relative paths expect. Expected values are computed
independently with pandas from the raw Parquet file: timestamps are New York time in the source, and a
cutoff of 2017-10-01 is midnight New York wall time.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.features import feature_set_for
from crmscore.features.segments import SEGMENT_COLUMNS

from conftest import REPO, SHARED_DATA, cli_here, requires_shared

pytestmark = requires_shared

CONFIG = "training/configs/completejourney.yaml"
AS_OF = "2017-10-01"
TZ = "America/New_York"


@pytest.fixture(scope="module")
def raw_before() -> pd.DataFrame:
    """Raw transaction lines strictly before 2017-10-01 00:00 New York wall time."""
    tx = pd.read_parquet(SHARED_DATA / "completejourney" / "transactions_sample.parquet",
                         columns=["household_id", "basket_id", "sales_value", "transaction_timestamp"])
    ts = tx["transaction_timestamp"]
    ts = (ts.dt.tz_convert(TZ) if ts.dt.tz is not None else ts).dt.tz_localize(None)
    return tx[ts < pd.Timestamp(AS_OF)].assign(local_ts=ts)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("cj") / "f.parquet"
    with pytest.MonkeyPatch.context() as mp:  # the command in this process (cli_here), from the repository
        mp.chdir(REPO)
        cli_here("features", "build", "--config", CONFIG, "--as-of", AS_OF, "--out", out)
    return pd.read_parquet(out)


def _quarantine_files() -> set[str]:
    qdir = REPO / "quarantine" / "completejourney"
    return {p.name for p in qdir.glob("*")} if qdir.is_dir() else set()


def test_validate_exits_zero():
    before = _quarantine_files()
    proc = subprocess.run([sys.executable, "-m", "crmscore", "data", "validate", "--config", CONFIG],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data contract OK" in proc.stdout
    assert "75,000" in proc.stdout  # every sample line read
    assert _quarantine_files() == before == set()  # the shipped data has no bad rows, so nothing is quarantined


def test_one_row_per_household_with_a_purchase_before_as_of(built, raw_before):
    assert built["customer_id"].is_unique
    expected = set(raw_before["household_id"].astype(str))
    assert set(built["customer_id"]) == expected
    assert len(built) == len(expected)


def test_every_declared_feature_is_present(built, monkeypatch):
    monkeypatch.chdir(REPO)
    data = load_customer_data(load_config(CONFIG))
    fs = feature_set_for(data, AS_OF)
    assert list(built.columns) == ["customer_id", *fs.names, *SEGMENT_COLUMNS]
    # the data has store ids and departments (via products) and household demographics
    assert {"distinct_stores_365d", "distinct_categories_365d", "attr_income"} <= set(fs.names)
    assert not any(name.startswith("event") for name in fs.names)  # no events configured


@pytest.mark.parametrize("household", ["1161", "2337"])
def test_spot_check_frequency_and_monetary(built, raw_before, household):
    # 1161 has a basket at 23:43 New York time on 2017-09-30, i.e. after midnight UTC: it only counts
    # when timestamps are read as New York wall time; 2337 is the household with the most baskets
    # a purchase is a basket with a positive net amount: 2337 has a basket worth 0.00, which is not one
    mine = raw_before[raw_before["household_id"].astype(str) == household]
    baskets = mine.groupby("basket_id")["sales_value"].sum()
    purchases = baskets[baskets > 0]
    row = built.set_index("customer_id").loc[household]
    assert row["frequency_total"] == len(purchases)
    assert row["monetary_total"] == pytest.approx(purchases.sum())
    last = mine.loc[mine["basket_id"].isin(purchases.index), "local_ts"].max()
    assert row["recency_days"] == pytest.approx((pd.Timestamp(AS_OF) - last).total_seconds() / 86400)


def test_the_cutoff_is_new_york_midnight(raw_before):
    """Guards the spot check above: household 1161's late basket lies between UTC and New York midnight."""
    late = raw_before[(raw_before["household_id"].astype(str) == "1161")
                      & (raw_before["local_ts"] >= pd.Timestamp("2017-09-30 20:00"))]
    assert not late.empty
    assert (late["transaction_timestamp"].dt.tz_convert("UTC") >= pd.Timestamp("2017-10-01", tz="UTC")).all()
