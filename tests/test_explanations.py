"""Explanations that add up, checked against an algorithm that is not LightGBM's own.

The independent check: exact Shapley values by enumerating every subset of a small model's features, the
value of a subset being the trees' conditional expectation by traversal with cover (data count) weights,
the TreeSHAP "path-dependent" definition, read from the booster's JSON dump, not from `pred_contrib`.
One small model of each kind (churn, next-purchase, expected-spend, next-category's heads, a lookalike PU
model) on six features, so the 2^6 subsets are enumerable. Then, on the full models of every kind: the
base value and contributions add up to the score in the score's space, and the reasons' effects and the
waterfall are the sequential walk from the base value's score to the score.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.models.tasks import get_task
from crmscore.scoring.explained import score_with_reasons

SMALL_FEATURES = ["recency_days", "frequency_365d", "monetary_365d", "gap_mean_days", "recency_gap_ratio",
                  "attr_region"]  # two with missing values, one categorical
ROWS = 12


# -- brute-force Shapley values from the tree dump --------------------------------------------------------
def _goes_left(node: dict, x: float) -> bool:
    """LightGBM's decision at a split for value x (NaN = missing), from the dump's fields."""
    if node["decision_type"] == "==":  # categorical: left when the category is in the split's set
        if math.isnan(x) or x < 0:
            return False
        return int(x) in {int(v) for v in str(node["threshold"]).split("||")}
    missing = node["missing_type"]
    if math.isnan(x) and missing != "NaN":
        x = 0.0
    if (missing == "Zero" and abs(x) <= 1e-35) or (missing == "NaN" and math.isnan(x)):
        return bool(node["default_left"])
    return x <= node["threshold"]


def _count(node: dict) -> float:
    return float(node["leaf_count"] if "leaf_value" in node else node["internal_count"])


def _expectation(node: dict, x: np.ndarray, known: frozenset[int]) -> float:
    """E[tree(x) | the features in `known` fixed at x's values]: a split on a known feature follows x, a split
    on an unknown one averages both children weighted by the training rows that went each way."""
    if "leaf_value" in node:
        return float(node["leaf_value"])
    left, right = node["left_child"], node["right_child"]
    f = node["split_feature"]
    if f in known:
        return _expectation(left if _goes_left(node, x[f]) else right, x, known)
    wl, wr = _count(left), _count(right)
    return (wl * _expectation(left, x, known) + wr * _expectation(right, x, known)) / (wl + wr)


def brute_force_shapley(booster, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(contributions (n_rows, n_features), base values (n_rows,), predictions (n_rows,)) in the booster's raw
    scale, by the Shapley formula over every subset of features; the prediction is the value of the full set."""
    trees = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    n_feat = X.shape[1]
    weights = {s: math.factorial(s) * math.factorial(n_feat - s - 1) / math.factorial(n_feat) for s in range(n_feat)}
    phi, base, full = np.zeros(X.shape), np.zeros(len(X)), np.zeros(len(X))
    for r, x in enumerate(X):
        value = {}
        for size in range(n_feat + 1):
            for subset in combinations(range(n_feat), size):
                known = frozenset(subset)
                value[known] = sum(_expectation(t, x, known) for t in trees)
        base[r], full[r] = value[frozenset()], value[frozenset(range(n_feat))]
        for i in range(n_feat):
            for known, v in value.items():
                if i not in known:
                    phi[r, i] += weights[len(known)] * (value[known | {i}] - v)
    return phi, base, full


def _encoded(model, frame: pd.DataFrame) -> np.ndarray:
    """The booster's numeric input (category codes for categorical columns, NaN for missing)."""
    enc = model._encode(frame)
    return np.column_stack([enc[c].cat.codes.to_numpy().astype(float) if c in model.categories_ else
                            enc[c].to_numpy(float) for c in model.feature_names_])


def _check_against_brute_force(model, frame: pd.DataFrame) -> None:
    """The model's explanation (score space) equals the brute-force Shapley values moved into that space."""
    X = _encoded(model, frame)
    codes = [i for i, c in enumerate(model.feature_names_) if c in model.categories_]
    X[:, codes] = np.where(X[:, codes] < 0, np.nan, X[:, codes])  # code -1: missing
    phi, base, full = brute_force_shapley(model.booster_, X)
    # the traversal itself (missing values, category sets) predicts what LightGBM predicts
    np.testing.assert_allclose(full, model.decision_function(frame), atol=1e-9)
    a, b = model.calibration_ if model.objective == "binary" else (1.0, 0.0)
    expl = model.explain(frame)
    assert np.abs(phi).max() > 1e-3  # the check compares something
    np.testing.assert_allclose(expl.contributions, a * phi, atol=1e-9)
    np.testing.assert_allclose(expl.base_value, a * base + b, atol=1e-9)


# -- data and models -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(synthetic_config):
    return load_customer_data(load_config(synthetic_config))


@pytest.fixture(scope="module")
def datasets(data):
    from crmscore.models.pipeline import transactional_dataset

    out = {}
    for name in ("churn", "next-purchase", "expected-spend", "next-category"):
        task = get_task(name)
        out[name] = transactional_dataset(task, data, task.settings(snapshots=3))
    return out


@pytest.fixture(scope="module")
def lookalike(synthetic_config, synthetic_dir, data):
    """The lookalike population and a seed of one latent segment's customers (from truth.parquet only)."""
    from crmscore.models.seeds import Seed
    from crmscore.models import lookalike as la

    cfg = load_config(synthetic_config)
    s = la.LookalikeSettings()
    pop = la.load_population(cfg, s, data=data)
    truth = pd.read_parquet(synthetic_dir / "truth.parquet")
    seed = Seed("file", "truth young_family", truth.loc[truth["latent_segment"] == "young_family",
                                                        "customer_id"].astype(str).tolist())
    return pop, seed, la.check_seed(seed, pop, s), s


SMALL = {"num_leaves": 7, "max_depth": 3, "min_child_samples": 20}


@pytest.mark.parametrize("kind", ["churn", "next-purchase", "expected-spend", "next-category"])
def test_tree_shap_matches_brute_force_shapley(datasets, kind):
    from crmscore.models.estimator import CustomerModel, MultiLabelModel
    from crmscore.models.bundle import label_matrix

    ds = datasets[kind]
    task = get_task(kind)
    cols = [c for c in SMALL_FEATURES if c in ds.features]
    assert len(cols) == len(SMALL_FEATURES)
    rows = ds.test[cols].head(ROWS)
    if task.kind == "multilabel":
        targets = list(ds.settings.categories)[:3]
        model = MultiLabelModel(targets, SMALL, num_boost_round=25).fit(
            ds.train[cols], label_matrix(ds.train, targets), ds.valid[cols], label_matrix(ds.valid, targets))
        heads = [model.head(t) for t in targets if model.head(t) is not None]
        assert heads
        for head in heads:
            _check_against_brute_force(head, rows)
        return
    model = CustomerModel(task.objective, SMALL, num_boost_round=25).fit(
        ds.train[cols], ds.train["label"], ds.valid[cols], ds.valid["label"])
    if task.objective == "binary":
        assert model.calibration_ != (1.0, 0.0)  # calibrated: the check covers the scaling
    _check_against_brute_force(model, rows)


def test_tree_shap_matches_brute_force_shapley_on_a_lookalike_model(lookalike):
    from crmscore.models import lookalike as la

    pop, seed, member, s = lookalike
    cols = [c for c in SMALL_FEATURES if c in pop.frame.columns][:6]
    assert len(cols) >= 4, pop.frame.columns
    pu = la.PUBaggingModel(bags=3, params=SMALL, num_boost_round=15, seed=3).fit(pop.frame[cols], member)
    _check_against_brute_force(pu.estimator_, pop.frame[cols].head(ROWS))


# -- additivity on the full models of every kind ------------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(datasets, lookalike):
    from crmscore.models import lookalike as la
    from crmscore.models.pipeline import fit_and_evaluate

    out = {}
    for name, ds in datasets.items():
        out[name] = (fit_and_evaluate(get_task(name), ds, ds.settings)[0], ds.test.head(200))
    pop, seed, member, s = lookalike
    out["lookalike"] = (la.fit_and_evaluate("young-family", pop, seed, member, s, {}).bundle, pop.frame.head(200))
    return out


@pytest.mark.parametrize("kind", ["churn", "next-purchase", "expected-spend", "next-category", "lookalike"])
def test_base_and_contributions_add_up_to_the_score(bundles, kind):
    """The margin (base + contributions) against the booster's raw score predicted on its own (not from the
    contributions), moved through the calibration or the log link: calibrated log-odds for probability
    models, the log of the amount for expected spend; and the reasons' effects are the walk from the base
    value's score, largest contribution first."""
    bundle, rows = bundles[kind]
    scored = score_with_reasons(bundle, rows, top_k=4)
    if bundle.kind == "multilabel":
        for r, (_, row) in enumerate(scored.iterrows()):
            if row["top_category"] is None or pd.isna(row["top_category"]):
                continue
            head = bundle.model.head(row["top_category"])
            expl = head.explain(rows.iloc[[r]])
            margin = head.calibrated_logit(head.decision_function(rows.iloc[[r]]))[0]
            assert expl.base_value + expl.contributions[0].sum() == pytest.approx(margin, abs=1e-9)
            assert 1 / (1 + np.exp(-margin)) == pytest.approx(row["score"], abs=1e-12)
            assert row["base_value"] == pytest.approx(expl.base_value, abs=1e-12)
        return
    model = bundle.model
    expl = model.explain(rows)
    raw = model.decision_function(rows)
    if bundle.kind == "binary":
        margin = model.calibrated_logit(raw)
        np.testing.assert_allclose(1 / (1 + np.exp(-margin)), scored["score"], atol=1e-12)
        np.testing.assert_allclose(model.predict(rows), scored["score"], atol=1e-12)
        link = lambda m: 1 / (1 + np.exp(-m))  # noqa: E731
    else:
        margin = raw  # Tweedie: the raw score is the log of the expected amount
        np.testing.assert_allclose(np.log(model.predict(rows)), margin, atol=1e-9)
        link = np.exp
    np.testing.assert_allclose(expl.base_value + expl.contributions.sum(1), margin, atol=1e-9)
    np.testing.assert_allclose(scored["base_value"], expl.base_value, atol=1e-12)
    key = "probability_change" if bundle.kind == "binary" else "change"
    for r, reasons in enumerate(scored["reasons"]):
        c = [x["contribution"] for x in reasons]
        assert [abs(v) for v in c] == sorted((abs(v) for v in c), reverse=True)
        assert abs(c[-1]) >= np.sort(np.abs(expl.contributions[r]))[-len(c)] - 1e-12  # the largest ones
        walk = link(expl.base_value + np.cumsum([0.0, *c]))
        assert [x[key] for x in reasons] == pytest.approx(np.diff(walk).tolist(), abs=1e-12)
