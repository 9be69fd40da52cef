"""The TreeSHAP tables (crmscore.models.treeshap) against LightGBM's own pred_contrib, on real boosters.

Each booster is small (a few thousand rows, tens of trees: milliseconds to train) but is checked to contain
what the tables must get right: numerical splits with missing type NaN sending missing values left and
right, missing type Zero, categorical splits, a feature split twice in one tree, single-leaf trees. The rows
explained include the awkward inputs: NaN everywhere, exact zeros and values within LightGBM's zero
threshold, every split threshold itself, unseen, negative and fractional category codes. Agreement is to
1e-9 absolute in float64 (measured: about 1e-15, the order in which the same terms are added).
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from crmscore.models.estimator import CustomerModel
from crmscore.models.treeshap import MAX_SPLITS, ShapTables

TOL = 1e-9
CATEGORY = 2  # the categorical column of the matrices below
ROUNDS = 40


def _data(rows: int = 3000, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Six features: 0 and 1 with missing values that behave like high (0) and low (1) values, so the
    learned default directions differ; 2 categorical (codes 0-9, some missing); 3 often exactly 0; 4 with
    a U-shaped effect (split twice on one path); 5 noise. Returns X and a signal to label."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6))
    X[:, CATEGORY] = rng.integers(0, 10, rows)
    X[:, 3] = np.where(rng.random(rows) < 0.35, 0.0, X[:, 3])
    signal = (X[:, 0] - X[:, 1] + np.isin(X[:, CATEGORY], (1, 4, 7)) + 0.8 * (X[:, 3] == 0)
              + (np.abs(X[:, 4]) > 1) + 0.5 * rng.normal(size=rows))
    X[rng.random(rows) < 0.15, 0] = np.nan
    signal[np.isnan(X[:, 0])] += 1.5  # missing 0 acts high: sent right
    miss1 = rng.random(rows) < 0.15
    X[miss1, 1] = np.nan
    signal[miss1] += 1.5  # missing 1 acts low (1 enters negatively): sent left
    X[rng.random(rows) < 0.05, CATEGORY] = np.nan
    return X, signal


def _train(objective: str, zero_as_missing: bool = False, rounds: int = ROUNDS, **params) -> lgb.Booster:
    X, signal = _data()
    y = (signal > np.median(signal)).astype(float) if objective == "binary" else signal
    base = {"objective": objective, "num_leaves": 7, "max_depth": 3, "min_data_in_leaf": 20, "verbosity": -1,
            "min_data_per_group": 10, "cat_smooth": 1, "num_threads": 1, "seed": 3,
            "zero_as_missing": zero_as_missing}
    return lgb.train({**base, **params}, lgb.Dataset(X, y, categorical_feature=[CATEGORY]), rounds)


def _internal_nodes(booster: lgb.Booster):
    """(tree index, the features split on the way to the node, node) for every internal node of the dump."""
    def walk(node, path, t):
        if "split_index" in node:
            yield t, path, node
            for child in (node["left_child"], node["right_child"]):
                yield from walk(child, path + (node["split_feature"],), t)
    for info in booster.dump_model()["tree_info"]:
        yield from walk(info["tree_structure"], (), info["tree_index"])


def _rows(booster: lgb.Booster) -> np.ndarray:
    """Training-like rows, then the awkward ones: all missing, zeros, values inside the zero threshold,
    each numerical split's threshold exactly, category codes unseen, past the bitsets, negative, fractional."""
    X, _ = _data(400, seed=11)
    special = [np.full(6, np.nan), np.zeros(6), np.full(6, 1e-40), np.full(6, -0.0)]
    for _, _, node in _internal_nodes(booster):
        if node["decision_type"] == "<=":
            row = X[len(special) % len(X)].copy()
            row[node["split_feature"]] = node["threshold"]
            special.append(row)
    for code in (10, 12, 40, 1000, -1, -0.5, 0.5, 1.9, 4.0, 7.2):
        row = X[0].copy()
        row[CATEGORY] = code
        special.append(row)
    return np.vstack([X, *special])


def _assert_equal_to_pred_contrib(booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None) -> None:
    tables = ShapTables.of(booster, num_iteration)
    assert tables is not None, ShapTables.unsupported(booster, num_iteration)
    ours = tables.contributions(X)
    theirs = booster.predict(X, pred_contrib=True, num_iteration=num_iteration)
    assert ours.shape == theirs.shape
    assert np.abs(theirs[:, :-1]).max() > 1e-3  # something to compare
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)


@pytest.mark.parametrize("objective", ["binary", "regression"])
@pytest.mark.parametrize("zero_as_missing", [False, True], ids=["nan-missing", "zero-missing"])
def test_tables_equal_pred_contrib(objective, zero_as_missing):
    booster = _train(objective, zero_as_missing)
    nodes = list(_internal_nodes(booster))
    kinds = {(n["missing_type"], n["default_left"]) for _, _, n in nodes if n["decision_type"] == "<="}
    if zero_as_missing:
        assert any(kind == "Zero" for kind, _ in kinds), kinds
    else:
        assert {("NaN", True), ("NaN", False)} <= kinds, kinds  # missing values sent both ways
    assert any(n["decision_type"] == "==" for _, _, n in nodes)  # categorical splits
    assert any(n["split_feature"] in path for _, path, n in nodes)  # a feature split twice on one path
    X = _rows(booster)
    _assert_equal_to_pred_contrib(booster, X)
    # fewer trees than the booster holds, one row at a time (the service's path), and two threads
    _assert_equal_to_pred_contrib(booster, X, num_iteration=7)
    tables = ShapTables.of(booster)
    np.testing.assert_allclose(tables.contributions(X[:1]), booster.predict(X[:1], pred_contrib=True),
                               rtol=0, atol=TOL)
    many = np.tile(X, (10, 1))
    np.testing.assert_array_equal(tables.contributions(many, num_threads=2), tables.contributions(many))


def test_single_leaf_trees():
    """A first tree without a split (no split met min_data_in_leaf), then trees grown from it: the single
    leaf only adds to the base value."""
    X, signal = _data()
    stump = lgb.train({"objective": "regression", "min_data_in_leaf": len(X), "verbosity": -1},
                      lgb.Dataset(X, signal, categorical_feature=[CATEGORY]), 3)
    assert [t["num_leaves"] for t in stump.dump_model()["tree_info"]] == [1]
    _assert_equal_to_pred_contrib_base_only(stump, X[:50])
    grown = lgb.train({"objective": "regression", "num_leaves": 4, "verbosity": -1, "min_data_per_group": 10},
                      lgb.Dataset(X, signal, categorical_feature=[CATEGORY]), 10, init_model=stump)
    leaves = [t["num_leaves"] for t in grown.dump_model()["tree_info"]]
    assert leaves[0] == 1 and min(leaves[1:]) > 1
    _assert_equal_to_pred_contrib(grown, _rows(grown))


def _assert_equal_to_pred_contrib_base_only(booster: lgb.Booster, X: np.ndarray) -> None:
    ours, theirs = ShapTables.of(booster).contributions(X), booster.predict(X, pred_contrib=True)
    assert not ours[:, :-1].any() and not theirs[:, :-1].any()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)


def test_big_and_linear_trees_are_left_to_pred_contrib():
    big = _train("binary", rounds=5, num_leaves=MAX_SPLITS + 2, max_depth=-1)
    assert ShapTables.of(big) is None
    assert f"{MAX_SPLITS + 1} splits" in ShapTables.unsupported(big)
    linear = _train("regression", rounds=3, linear_tree=True, num_leaves=4)
    assert ShapTables.of(linear) is None and "linear" in ShapTables.unsupported(linear)


def _frame(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    X, signal = _data(rows, seed)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    frame["f2"] = pd.Series([None if np.isnan(v) else f"c{int(v)}" for v in X[:, CATEGORY]], dtype=object)
    return frame, (signal > np.median(signal)).astype(float)


@pytest.mark.parametrize("shape,engine", [((4, 2), "tables"), ((15, 5), "pred_contrib")])
def test_customer_model_explains_with_the_tables_where_they_apply(shape, engine):
    """CustomerModel on a frame with a text category: the engine it picks, and its SHAP values against
    pred_contrib on the same encoded frame, unseen and missing levels included."""
    frame, y = _frame(3000, 5)
    valid, yv = _frame(600, 6)
    model = CustomerModel("binary", {"num_leaves": shape[0], "max_depth": shape[1], "num_threads": 1,
                                     "min_data_per_group": 10, "cat_smooth": 1}, num_boost_round=60).fit(
        frame, y, valid, yv)
    assert model.categories_ == {"f2": [f"c{i}" for i in range(10)]}
    assert model.shap_engine == engine
    rows = valid.head(300).copy()
    rows.loc[rows.index[:3], "f2"] = ["unseen", None, "c3"]
    encoded = model._encode(rows)
    theirs = model.booster_.predict(encoded, pred_contrib=True, num_iteration=model.best_iteration_)
    np.testing.assert_allclose(model.shap_values(encoded), theirs, rtol=0, atol=TOL)
    expl = model.explain(rows)
    np.testing.assert_allclose(expl.scores(), model.predict(rows), rtol=0, atol=1e-9)
    from crmscore.models.explain_cost import explain_cost

    cost = explain_cost(model, valid, rows=300)
    assert cost["shap_engine"] == engine and cost["engine_us"] > 0 and cost["pred_contrib_us"] > 0


def test_batch_reason_orders_are_each_rows_stable_sort():
    """The batch path's top-k selection (compiled) against reason_order's stable sort row by row, with ties:
    exact zeros (features a row's trees never split on), equal values, and rows of all zeros."""
    from crmscore.models.space import reason_order, reason_orders

    rng = np.random.default_rng(2)
    c = rng.normal(size=(400, 12))
    c[:, 3] = 0.0
    c[:50, :9] = 0.0
    c[50:80] = 0.0
    c[80:120, ::2] = 1.5
    c[120:160, 1::2] = -1.5
    for k in (0, 1, 5, 12, 20):
        expected = np.array([reason_order(row, k) for row in c]).reshape(len(c), min(k, 12))
        np.testing.assert_array_equal(reason_orders(c, k), expected)


def test_tables_that_disagree_with_pred_contrib_are_refused(caplog):
    """The check ShapTables.of runs before tables are used (a refusal there means pred_contrib explains the
    model): the booster's own tables pass it; with one table entry off by 1e-6 (what a LightGBM rule change
    would do to a pattern) they fail it, with a warning naming the fallback."""
    booster = _train("binary")
    tables = ShapTables(booster.dump_model())
    tables.check(booster)  # the real tables agree
    probe = tables.probe_rows()
    assert np.isnan(probe).any() and (probe == 0).any()  # the awkward inputs are among the probe rows
    table = tables._arrays[9]
    table[np.flatnonzero(table)[0]] += 1e-6
    with caplog.at_level("WARNING", logger="crmscore.models.treeshap"), pytest.raises(Exception, match="differ"):
        tables.check(booster)
    assert "pred_contrib" in caplog.text
