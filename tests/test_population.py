"""Who each task predicts for at a cutoff (crmscore.models.population): the labels (training) and batch
scoring read one rule, so both see the same customers; a short history trains with the defaults."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import yaml

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.features.build import build_features
from crmscore.models.churn import churn_labels
from crmscore.models.next_purchase import category_labels, purchase_labels, spend_labels
from crmscore.models.tasks import get_task

from conftest import REPO, cli_here, tracking_store, write_config, write_frames

CUT = pd.Timestamp("2024-06-01")


@pytest.fixture
def histories(tmp_path):
    """Customers at CUT: A bought 10 days before; B 200 days before (past churned_days, 180); C 400 days before
    (outside any 365-day lookback); D signed up without buying; E first bought after CUT; F signed up after."""
    tx = pd.DataFrame([("A", "2024-05-22", 10.0, "dairy"), ("A", "2024-06-10", 12.0, "dairy"),
                       ("B", "2023-11-14", 20.0, "wine"), ("B", "2024-06-20", 9.0, "wine"),
                       ("C", "2023-04-28", 30.0, "dairy"),
                       ("E", "2024-06-03", 5.0, "dairy")], columns=["customer_id", "ts", "amount", "category"])
    customers = pd.DataFrame({"customer_id": list("ABCDEF"),
                              "signup_ts": pd.to_datetime(["2023-01-01", "2023-01-01", "2023-01-01", "2024-03-01",
                                                           "2024-06-02", "2024-06-15"])})
    frames = write_frames(tmp_path, {"transactions": tx, "customers": customers})
    frames["customers"]["columns"] = {"customer_id": "customer_id", "signup_ts": "signup_ts"}
    return load_customer_data(load_config(write_config(tmp_path, frames)))


def _ids(frame: pd.DataFrame) -> set[str]:
    return set(frame["customer_id"])


def test_each_tasks_default_population(histories):
    data = histories
    churn = churn_labels(data, CUT, get_task("churn").settings())
    assert _ids(churn) == {"A"}  # B is past churned_days: already 'churned', nothing left to keep
    assert churn.set_index("customer_id")["label"].to_dict() == {"A": 0}
    purchase = purchase_labels(data, CUT, get_task("next-purchase").settings())
    assert _ids(purchase) == {"A", "B", "C", "D"}  # every customer known: the lapsed and the sign-up too
    assert purchase.set_index("customer_id")["label"].to_dict() == {"A": 1, "B": 1, "C": 0, "D": 0}
    spend = spend_labels(data, CUT, get_task("expected-spend").settings())
    assert _ids(spend) == {"A", "B", "C", "D"}
    s = get_task("next-category").settings(categories=["dairy", "wine"])
    assert _ids(category_labels(data, CUT, s)) == {"A", "B", "C"}  # a purchase history to read


def test_an_explicit_lookback_filters_and_churned_days_follow_the_config(histories):
    data = histories
    assert _ids(churn_labels(data, CUT, get_task("churn").settings(lookback_days=365))) == {"A", "B"}
    assert _ids(purchase_labels(data, CUT, get_task("next-purchase").settings(lookback_days=365))) == {"A", "B"}
    data.config.segments.lifecycle.churned_days = 250
    assert _ids(churn_labels(data, CUT, get_task("churn").settings())) == {"A", "B"}


def test_labels_and_scoring_read_the_same_population(synthetic_config):
    """At a cutoff, each task's label rows are exactly the customers its rule admits from the feature table
    that batch scoring and the service read."""
    data = load_customer_data(load_config(synthetic_config))
    cut = pd.Timestamp("2024-07-01")
    feats = build_features(data, cut, segments=False)
    for name, fn, extra in (("churn", churn_labels, {}), ("next-purchase", purchase_labels, {}),
                            ("next-category", category_labels, {"categories": ["x"]}),
                            ("churn", churn_labels, {"lookback_days": 60})):
        task = get_task(name)
        s = task.settings(**extra)
        rule = task.population_rule(s, data.config.segments.lifecycle)
        scored = set(feats.loc[rule.admits(feats["recency_days"]), "customer_id"])
        labelled = _ids(fn(data, cut, s))
        assert labelled == scored, (name, extra, len(labelled ^ scored))
        assert 0 < len(labelled) <= len(feats)
    known = _ids(purchase_labels(data, cut, get_task("next-purchase").settings()))
    assert known == set(feats["customer_id"]) and feats["recency_days"].isna().any()  # sign-ups without a purchase


def test_twelve_months_train_with_the_defaults(tmp_path):
    """12 months of history and a 90-day horizon: churn and next-purchase train with the default settings."""
    from crmscore import synthetic

    synthetic.write(synthetic.generate(customers=1500, seed=3, start="2024-01-01", end="2025-01-01"), tmp_path)
    cfg = yaml.safe_load((REPO / "training" / "configs" / "synthetic.yaml").read_text())
    for source in cfg["data"].values():
        source["path"] = str(tmp_path / os.path.basename(source["path"]))
    cfg["validation"]["quarantine_dir"] = str(tmp_path / "quarantine")
    config = tmp_path / "twelve.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {"CRMSCORE_TRACKING_URI": tracking_store(tmp_path),
           "CRMSCORE_ARTIFACT_LOCATION": str(tmp_path / "mlruns")}
    for name in ("churn", "next-purchase"):
        result = json.loads(cli_here("train", name, "--config", config, "--horizon-days", "90", "--json", env=env).stdout)
        assert result["registered_version"] == "1" and 0.5 < result["metrics"]["roc_auc"] <= 1
        assert result["cutoffs"]["test"].startswith("2024-10-03")


def test_a_refund_is_not_a_purchase(tmp_path):
    """A refund-only order makes no customer active and no one a buyer: G's only activity in the horizon is a
    refund (churned, not a buyer); H's only activity before the cutoff is a refund (in no activity window);
    K nets a refund against a purchase inside one order that stays positive (still a purchase)."""
    tx = pd.DataFrame([("G", "2024-05-01", 40.0, "g1"), ("G", "2024-06-10", -40.0, "g2"),
                       ("H", "2024-05-20", -15.0, "h1"), ("H", "2024-06-05", 25.0, "h2"),
                       ("K", "2024-05-25", 30.0, "k1"), ("K", "2024-06-12", 20.0, "k2"),
                       ("K", "2024-06-12", -5.0, "k2")], columns=["customer_id", "ts", "amount", "order_id"])
    data = load_customer_data(load_config(write_config(tmp_path, write_frames(tmp_path, {"transactions": tx}))))
    churn = churn_labels(data, CUT, get_task("churn").settings(horizon_days=30)).set_index("customer_id")["label"]
    assert churn.to_dict() == {"G": 1, "K": 0}  # H has no purchase before the cutoff: not active
    s = get_task("next-purchase").settings(horizon_days=30)
    purchase = purchase_labels(data, CUT, s).set_index("customer_id")
    assert purchase["label"].to_dict() == {"G": 0, "H": 1, "K": 1}  # H is known (a refund line), then buys
    assert pd.isna(purchase.loc["G", "days_to_next"]) and purchase.loc["H", "days_to_next"] == pytest.approx(4.0)
    spend = spend_labels(data, CUT, get_task("expected-spend").settings(horizon_days=30)).set_index("customer_id")
    assert spend["label"].to_dict() == {"G": 0.0, "H": 25.0, "K": 15.0}  # refunds netted, floored at 0
    feats = build_features(data, CUT).set_index("customer_id")
    assert pd.isna(feats.loc["H", "recency_days"]) and feats.loc["H", "frequency_total"] == 0
    assert feats.loc["H", "lifecycle_stage"] == "prospect"


def test_too_little_data_says_how_much_more_is_needed(histories):
    """Data from 2023-04-28 to 2024-06-20 with a 200-day horizon: 90 + 3 x 200 = 690 days are needed, the
    earliest --as-of that works (2025-03-18) lies after the data's end, and the message says so."""
    from crmscore.models.pipeline import GuardrailError, transactional_dataset

    task = get_task("churn")
    with pytest.raises(GuardrailError, match=r"= 690 days\. The earliest --as-of that works is 2025-03-18; the data "
                                             r"ends 2024-06-20, so it needs 270 more days of history"):
        transactional_dataset(task, histories, task.settings(horizon_days=200))
