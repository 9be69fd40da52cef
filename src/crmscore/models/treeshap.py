"""Exact TreeSHAP of small trees by table lookup: what LightGBM's `pred_contrib` computes, at array speed.

Why: `pred_contrib` runs the TreeSHAP recursion (path extension and unwinding) for every row and tree; on
the shipped churn shape (350 trees of 4 leaves) that is about 8x a prediction, most of a nightly explained
batch. But path-dependent TreeSHAP of one tree for one row depends on the row only through the direction
(left or right) it takes at each internal node of that tree. A tree of K internal nodes has at most 2^K
decision patterns, so its SHAP values can be computed once per pattern when the model is loaded: the
Shapley values, over the tree's distinct features, of v(S) = the tree's output where nodes on features in
S follow the pattern's direction and the others average their children weighted by data count
(`internal_count` / `leaf_count`, the fractions LightGBM's TreeSHAP uses; src/io/tree.cpp `TreeSHAP`).
The base value is the sum over trees of LightGBM's `ExpectedValue` (leaf counts over the root's count).

Explaining rows is then array work over a block of rows: every node's direction at once (LightGBM's own
rules for missing values and categories, include/LightGBM/tree.h `NumericalDecision` /
`CategoricalDecision`), the pattern of each (row, tree) as bits, a gather from the tables and a sum per
feature. The result equals `pred_contrib` up to float rounding (tests/test_treeshap.py holds it to 1e-9 in
float64). `pred_contrib` stays the reference and the fallback: `ShapTables.of` returns None (and
`unsupported` says why) for trees of more than MAX_SPLITS internal nodes (the tables grow as 2^K),
linear trees, categorical splits on codes past MAX_CATEGORY_CODE, several trees per iteration (multiclass) and
averaged outputs (random forests).
"""

from __future__ import annotations

import math
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from crmscore.compiled import compiled

log = logging.getLogger(__name__)
MAX_SPLITS = 8  # internal nodes per tree: 2^8 patterns per tree at most (and a byte of pattern bits)
MAX_CATEGORY_CODE = 1 << 16  # categorical splits: a membership row of this many codes per split at most
ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (1e-35f): inputs this close to 0 are read as 0


@dataclass
class _Node:
    """An internal node as the tables need it."""

    feature: int
    threshold: float  # numerical split: go left when value <= threshold
    categories: frozenset[int] | None  # categorical split: go left when the category is in the set
    missing: str  # "None" | "Zero" | "NaN"
    default_left: bool
    count: float
    left: Any  # _Node or _Leaf
    right: Any
    index: int = -1  # position of this node's direction bit in the tree's pattern


@dataclass
class _Leaf:
    value: float
    count: float


def _read_tree(node: dict[str, Any]) -> tuple[Any, list[_Node], list[_Leaf]]:
    """The dumped tree (booster.dump_model()'s tree_structure) as nodes, its internal nodes in preorder."""
    internals: list[_Node] = []
    leaves: list[_Leaf] = []

    def read(d: dict[str, Any]) -> Any:
        if "split_index" not in d:
            if "leaf_coeff" in d or "leaf_features" in d:
                raise _Unsupported("a linear tree (linear_tree=true)")
            leaf = _Leaf(float(d["leaf_value"]), float(d.get("leaf_count", 0)))
            leaves.append(leaf)
            return leaf
        categorical = d["decision_type"] == "=="
        if not categorical and d["decision_type"] != "<=":
            raise _Unsupported(f"a split of decision type {d['decision_type']!r}")
        n = _Node(int(d["split_feature"]),
                  math.nan if categorical else float(d["threshold"]),
                  frozenset(int(c) for c in str(d["threshold"]).split("||")) if categorical else None,
                  str(d.get("missing_type", "None")), bool(d.get("default_left", False)),
                  float(d["internal_count"]), None, None, len(internals))
        internals.append(n)
        n.left, n.right = read(d["left_child"]), read(d["right_child"])
        return n

    root = read(node)
    return root, internals, leaves


class _Unsupported(Exception):
    """Why a model is left to pred_contrib."""


def _tree_table(root: _Node, internals: list[_Node]) -> tuple[np.ndarray, list[int]]:
    """(2^K patterns, D features) SHAP values of one tree and its D distinct features (first use order).

    v[S, p]: the tree's output for subset S (bit d: the d-th distinct feature) and pattern p (bit k: node k
    goes left), computed bottom-up as arrays over all subsets and patterns; the Shapley value of feature d
    is sum over S without d of |S|! (D - |S| - 1)! / D! * (v[S + d] - v[S])."""
    features = list(dict.fromkeys(n.feature for n in internals))
    local = {f: i for i, f in enumerate(features)}
    D, K = len(features), len(internals)
    S = np.arange(2 ** D)[:, None]
    P = np.arange(2 ** K)[None, :]

    def value(node: Any) -> np.ndarray:
        if isinstance(node, _Leaf):
            return np.full((1, 1), node.value)
        vl, vr = value(node.left), value(node.right)
        follow = np.where((P >> node.index) & 1 == 1, vl, vr)
        average = (node.left.count / node.count) * vl + (node.right.count / node.count) * vr
        return np.where((S >> local[node.feature]) & 1 == 1, follow, average)

    v = np.broadcast_to(value(root), (2 ** D, 2 ** K))
    sizes = np.array([bin(s).count("1") for s in range(2 ** D)])
    weight = np.array([math.factorial(s) * math.factorial(D - s - 1) / math.factorial(D) if s < D else 0.0
                       for s in range(D + 1)])
    table = np.empty((2 ** K, D))
    for d in range(D):
        without = np.flatnonzero((np.arange(2 ** D) >> d) & 1 == 0)
        table[:, d] = weight[sizes[without]] @ (v[without | (1 << d)] - v[without])
    return table, features


def _expected_value(root: Any, leaves: list[_Leaf]) -> float:
    """LightGBM's Tree::ExpectedValue: the leaves' values weighted by leaf count over the root's count."""
    if isinstance(root, _Leaf):
        return root.value
    total = root.count
    value = 0.0
    for leaf in leaves:  # in leaf order, as LightGBM sums them
        value += (leaf.count / total) * leaf.value
    return value


def input_matrix(X: Any) -> np.ndarray:
    """The float matrix LightGBM reads from X: a frame's categorical columns as their codes with NaN for
    missing (the frame's categories are the booster's, as CustomerModel._encode makes them; lightgbm's
    _data_from_pandas does the same), other columns as float64; a matrix as it is."""
    if not hasattr(X, "columns"):
        return np.asarray(X, dtype=np.float64)
    import pandas as pd

    categorical = [j for j, dtype in enumerate(X.dtypes) if isinstance(dtype, pd.CategoricalDtype)]
    if not categorical:  # one block conversion: a column at a time costs more than the kernel on small batches
        return X.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.empty((len(X), X.shape[1]))
    numeric = sorted(set(range(X.shape[1])) - set(categorical))
    out[:, numeric] = X.iloc[:, numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    for j in categorical:
        codes = X.iloc[:, j].cat.codes.to_numpy()
        out[:, j] = np.where(codes < 0, np.nan, codes)
    return out


class ShapTables:
    """Exact TreeSHAP of a booster's first `num_iteration` trees by table lookup (see the module docstring).

    `contributions(X)` takes the booster's input matrix (float, categories as their codes, missing as NaN)
    and returns what `booster.predict(X, pred_contrib=True, num_iteration=...)` returns: (rows, features + 1),
    the base value last."""

    def __init__(self, dump: dict[str, Any]):
        if int(dump.get("num_tree_per_iteration", 1)) != 1:
            raise _Unsupported(f"{dump.get('num_tree_per_iteration')} trees per iteration (multiclass)")
        if dump.get("average_output"):
            raise _Unsupported("averaged tree outputs (random forest)")
        self.n_features = int(dump["max_feature_idx"]) + 1
        base = 0.0
        trees = []
        for info in dump["tree_info"]:
            if info.get("is_linear"):
                raise _Unsupported("a linear tree (linear_tree=true)")
            root, internals, leaves = _read_tree(info["tree_structure"])
            base += _expected_value(root, leaves)
            if internals:
                if len(internals) > MAX_SPLITS:
                    raise _Unsupported(f"a tree of {len(internals)} splits (the tables take up to {MAX_SPLITS})")
                if any(n.count <= 0 for n in internals) or any(leaf.count <= 0 for leaf in leaves):
                    raise _Unsupported("a tree without data counts")
                trees.append((root, internals))
        self.base_value = base
        self.trees = len(trees)
        self.max_splits = max((len(i) for _, i in trees), default=0)
        self._build(trees)

    @classmethod
    def of(cls, booster: Any, num_iteration: int | None = None) -> ShapTables | None:
        """The tables of a LightGBM booster's trees up to num_iteration (dump_model's meaning), or None when
        the model is left to pred_contrib (`unsupported` says why). Before they are used, the tables are
        checked against the booster's own pred_contrib on probe rows (check): these tables follow LightGBM's
        decision rules from its source, and a later LightGBM could change one, so a difference falls back to
        pred_contrib with a warning instead of explaining wrongly."""
        try:
            tables = cls(booster.dump_model(num_iteration=num_iteration))
            tables.check(booster, num_iteration)
        except _Unsupported as e:
            log.debug("TreeSHAP tables do not apply: %s; pred_contrib explains this model", e)
            return None
        return tables

    @staticmethod
    def unsupported(booster: Any, num_iteration: int | None = None) -> str | None:
        """Why the booster's trees are left to pred_contrib, or None when the tables apply."""
        try:
            ShapTables(booster.dump_model(num_iteration=num_iteration)).check(booster, num_iteration)
        except _Unsupported as e:
            return str(e)
        return None

    def probe_rows(self, rows: int = 64, seed: int = 0) -> np.ndarray:
        """Rows that exercise every split's rules: per feature, values drawn from each of its thresholds and
        the doubles just beside them, 0, a value within LightGBM's zero threshold, NaN, and for categorical
        splits every code in a set, one past the largest, a negative and a fractional code."""
        feature, threshold, _, _, category_row, member, width = self._arrays[:7]
        member = member.reshape(-1, width)
        values: dict[int, set[float]] = {}
        for j, f in enumerate(feature[:self.trees * self._K] if self.trees else []):
            v = values.setdefault(int(f), {0.0, 1e-36, math.nan})
            if category_row[j] >= 0:
                codes = np.flatnonzero(member[category_row[j]])
                v.update(float(c) for c in codes)
                v.update((float(codes.max() + 1) if len(codes) else 1.0, -1.0, 0.5))
            else:
                t = float(threshold[j])
                v.update((t, math.nextafter(t, -math.inf), math.nextafter(t, math.inf)))
        rng = np.random.default_rng(seed)
        X = np.zeros((rows, self.n_features))
        for f, v in values.items():
            X[:, f] = rng.choice(np.array(sorted(v, key=lambda x: (math.isnan(x), x))), size=rows)
        return X

    def check(self, booster: Any, num_iteration: int | None = None, tolerance: float = 1e-9) -> None:
        """Raise _Unsupported when these tables and LightGBM's pred_contrib differ on probe_rows by more than
        tolerance (relative to the largest contribution), or when no compiled kernel runs here."""
        if compiled(_explain_rows) is None:
            raise _Unsupported("numba is unavailable here")
        X = self.probe_rows()
        ours = self.contributions(X)
        theirs = np.asarray(booster.predict(X, pred_contrib=True, num_iteration=num_iteration))
        scale = max(1.0, float(np.nanmax(np.abs(theirs))) if theirs.size else 1.0)
        gap = float(np.nanmax(np.abs(ours - theirs))) if ours.size else 0.0
        if not gap <= tolerance * scale:
            import lightgbm

            log.warning("TreeSHAP tables differ from LightGBM %s's pred_contrib by %.3g on probe rows: this model "
                        "is explained by pred_contrib (exact, slower)", lightgbm.__version__, gap)
            raise _Unsupported(f"the tables differ from pred_contrib by {gap:.3g} on probe rows")

    # -- the tables ----------------------------------------------------------------------------------
    def _build(self, trees: list[tuple[_Node, list[_Node]]]) -> None:
        """Flat arrays for the kernel: K = max_splits node slots per tree (a tree's own nodes first, in its
        pattern-bit order) and D feature slots per tree (-1 after its own features); per node, what a NaN
        (and, for missing type Zero, a 0) is read as so that `value <= threshold` sends it LightGBM's way."""
        T, K = len(trees), self.max_splits
        D = max((len({n.feature for n in i}) for _, i in trees), default=0)
        self._K, self._D = K, D
        nodes = max(T * K, 1)
        feature = np.zeros(nodes, dtype=np.int64)
        threshold = np.zeros(nodes)
        nan_as = np.zeros(nodes)  # missing type None: NaN is read as 0.0
        zero_too = np.zeros(nodes, dtype=np.bool_)
        category_row = np.full(nodes, -1, dtype=np.int64)
        cat_sets: list[frozenset[int]] = []
        splits = np.zeros(max(T, 1), dtype=np.int64)
        table = np.zeros((max(T, 1), 2 ** K, max(D, 1)))
        slot_feature = np.full((max(T, 1), max(D, 1)), -1, dtype=np.int64)
        for t, (root, internals) in enumerate(trees):
            tab, features = _tree_table(root, internals)
            table[t, :tab.shape[0], :tab.shape[1]] = tab
            slot_feature[t, :len(features)] = features
            splits[t] = len(internals)
            for n in internals:
                j = t * K + n.index
                feature[j] = n.feature
                if n.categories is not None:
                    category_row[j] = len(cat_sets)
                    cat_sets.append(n.categories)
                    continue
                threshold[j] = n.threshold
                if n.missing in ("NaN", "Zero"):  # the default direction, by a value on that side of any threshold
                    nan_as[j] = -math.inf if n.default_left else math.inf
                    zero_too[j] = n.missing == "Zero"
        # categorical nodes: a row of membership per node; codes at or past `width - 1` are in no set
        width = max((max(s) for s in cat_sets if s), default=0) + 2
        if width > MAX_CATEGORY_CODE:
            raise _Unsupported(f"a categorical split on code {width - 2} (the tables take codes below "
                               f"{MAX_CATEGORY_CODE})")
        member = np.zeros((max(len(cat_sets), 1), width), dtype=np.bool_)
        for i, s in enumerate(cat_sets):
            member[i, sorted(s)] = True
        self._arrays = (feature, threshold, nan_as, zero_too, category_row, member.reshape(-1), width, splits, K,
                        table.reshape(-1), max(D, 1), slot_feature.reshape(-1))

    # -- explaining ----------------------------------------------------------------------------------
    def contributions(self, X: Any, num_threads: int = 1) -> np.ndarray:
        """pred_contrib's output for the booster input matrix X: (rows, features + 1), base value last.
        num_threads > 1 splits the rows between threads (the kernel runs without the GIL)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix of {self.n_features} feature columns, got shape {X.shape}")
        out = np.zeros((len(X), self.n_features + 1))
        out[:, -1] = self.base_value
        if not self.trees or not len(X):
            return out
        kernel = compiled(_explain_rows)
        threads = max(1, min(int(num_threads), len(X) // MIN_ROWS_PER_THREAD))
        if threads == 1:
            kernel(X, 0, len(X), self.trees, *self._arrays, out)
            return out
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, len(X), threads + 1).astype(int)
        with ThreadPoolExecutor(threads, thread_name_prefix="crmscore-treeshap") as pool:
            for f in [pool.submit(kernel, X, int(a), int(b), self.trees, *self._arrays, out)
                      for a, b in zip(bounds[:-1], bounds[1:])]:
                f.result()
        return out


MIN_ROWS_PER_THREAD = 2000  # below this a second thread costs more than it saves


BLOCK = 64  # rows explained together: their values feature-major, so each node tests them in one SIMD loop


def _explain_rows(X, start, stop, trees, feature, threshold, nan_as, zero_too, category_row, member, width,
                  splits, K, table, D, slot_feature, out):  # pragma: no cover  (compiled by numba)
    """Rows start..stop of X, BLOCK at a time: the block's values feature-major (inputs within ZERO of 0 read
    as 0, as LightGBM parses a dense row); for each tree, each node's direction for every row of the block
    (LightGBM's NumericalDecision and CategoricalDecision, include/LightGBM/tree.h) as a bit of the row's
    pattern; then the tree's table row for that pattern added to the row's contributions. Branch-free inner
    loops over the block's rows, which the compiler vectorises."""
    patterns = 1 << K
    F = X.shape[1]
    xb = np.empty((F, BLOCK))
    ob = np.empty((F, BLOCK))
    pattern = np.empty(BLOCK, dtype=np.int64)
    for b0 in range(start, stop, BLOCK):
        n = min(BLOCK, stop - b0)
        for i in range(n):
            for f in range(F):
                v = X[b0 + i, f]
                xb[f, i] = 0.0 if abs(v) <= ZERO else v
                ob[f, i] = 0.0
        for t in range(trees):
            for i in range(n):
                pattern[i] = 0
            for k in range(splits[t]):
                j = t * K + k
                f, limit, nan_value, c = feature[j], threshold[j], nan_as[j], category_row[j]
                if c >= 0:  # the value cut to an int, in the node's set; NaN and negatives go right
                    for i in range(n):
                        v = xb[f, i]
                        left = False
                        if v > -1.0 and v < width - 1:
                            left = member[c * width + int(v)]
                        pattern[i] |= np.int64(left) << k
                elif zero_too[j]:  # missing type Zero: NaN and 0 take the default direction
                    for i in range(n):
                        v = xb[f, i]
                        if v != v or v == 0.0:
                            v = nan_value
                        pattern[i] |= np.int64(v <= limit) << k
                else:  # missing type NaN: NaN takes the default direction; None: NaN is read as 0
                    for i in range(n):
                        v = xb[f, i]
                        if v != v:
                            v = nan_value
                        pattern[i] |= np.int64(v <= limit) << k
            first = t * patterns
            for d in range(D):
                f = slot_feature[t * D + d]
                if f < 0:
                    break
                for i in range(n):
                    ob[f, i] += table[(first + pattern[i]) * D + d]
        for i in range(n):
            for f in range(F):
                out[b0 + i, f] += ob[f, i]
