"""Metrics and plots for out-of-time evaluation (model and baselines alike): binary scores, amounts
(regression) and ranked targets (multilabel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import metrics as skm

TOP_SHARES = (0.05, 0.10, 0.20)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, weighted by bin size."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(err)


def lift_and_capture(y: np.ndarray, score: np.ndarray, share: float) -> tuple[float, float]:
    """Lift (positive rate in the top share / overall rate) and capture (share of positives found there)."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    n_top = max(1, int(round(len(y) * share)))
    top = np.argsort(-score, kind="stable")[:n_top]
    rate, positives = y.mean(), y.sum()
    lift = float(y[top].mean() / rate) if rate > 0 else float("nan")
    capture = float(y[top].sum() / positives) if positives > 0 else float("nan")
    return lift, capture


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Metrics that need only an ordering: ROC-AUC, PR-AUC, lift and capture at the top 5/10/20%."""
    out = {"roc_auc": float(skm.roc_auc_score(y, score)), "pr_auc": float(skm.average_precision_score(y, score))}
    for share in TOP_SHARES:
        lift, capture = lift_and_capture(y, score, share)
        pct = int(share * 100)
        out[f"lift_top{pct}"] = lift
        out[f"capture_top{pct}"] = capture
    return out


def probability_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Ranking metrics plus log loss, Brier score and ECE, for calibrated probabilities."""
    p = np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    return {**ranking_metrics(y, p), "log_loss": float(skm.log_loss(y, p)),
            "brier": float(skm.brier_score_loss(y, p)), "ece": expected_calibration_error(y, p)}


GRADE_MARGIN = 0.02  # the A grade's gain on a ROC-AUC (0.5 = random): 4% of the random line


def quality_grade(model_auc: float, best_baseline_auc: float, margin: float = GRADE_MARGIN) -> str:
    """A: beats the best baseline's primary metric by `margin` or more (on that metric's scale: 0.02 of a ROC-AUC;
    a task with another scale passes its own, see Task.grade_margin); B: beats it by less; C: does not beat it."""
    gain = model_auc - best_baseline_auc
    return "A" if gain >= margin else "B" if gain > 0 else "C"


# -- amounts (expected spend) --------------------------------------------------------------------
def gini(y: np.ndarray, pred: np.ndarray) -> float:
    """Gini of the amounts y ordered by pred (highest first): 2 x area under the cumulative-share curve - 1.

    Tied predictions share their rows' amounts evenly (the curve is a straight line across a tie), so
    the value does not depend on row order.
    """
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    if len(y) == 0 or y.sum() == 0:
        return float("nan")
    order = np.argsort(-pred, kind="stable")
    ys, ps = y[order], pred[order]
    ends = np.r_[np.flatnonzero(np.diff(ps) != 0), len(ps) - 1]  # last row of each tie group
    x = np.r_[0.0, (ends + 1) / len(y)]
    g = np.r_[0.0, np.cumsum(ys)[ends] / ys.sum()]
    area = float(np.sum((g[1:] + g[:-1]) / 2 * np.diff(x)))
    return 2 * area - 1


def normalized_gini(y: np.ndarray, pred: np.ndarray) -> float:
    """Gini of pred divided by the Gini of a perfect ordering (1 = perfect, 0 = random, < 0 = reversed)."""
    best = gini(y, y)
    return float(gini(y, pred) / best) if best and np.isfinite(best) else float("nan")


def decile_mape(y: np.ndarray, pred: np.ndarray, groups: int = 10) -> float:
    """Mean over prediction deciles (rows sorted by pred, ten equal groups) of |mean predicted - mean actual|
    / mean actual; deciles whose actual mean is 0 are left out."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    order = np.argsort(-pred, kind="stable")
    errors = []
    for part in np.array_split(order, groups):
        actual = y[part].mean() if len(part) else 0.0
        if actual > 0:
            errors.append(abs(pred[part].mean() - actual) / actual)
    return float(np.mean(errors)) if errors else float("nan")


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Customer-value metrics: normalised Gini, Spearman correlation, decile-level MAPE, total spend error
    ((sum predicted - sum actual) / sum actual), MAE and RMSE (currency)."""
    from scipy.stats import spearmanr

    y, pred = np.asarray(y, float), np.asarray(pred, float)
    total = y.sum()
    rho = spearmanr(y, pred).statistic if np.ptp(pred) > 0 and np.ptp(y) > 0 else float("nan")
    return {"normalized_gini": normalized_gini(y, pred), "spearman": float(rho), "decile_mape": decile_mape(y, pred),
            "total_spend_error": float((pred.sum() - total) / total) if total else float("nan"),
            "mae": float(np.mean(np.abs(pred - y))), "rmse": float(np.sqrt(np.mean((pred - y) ** 2)))}


# -- ranked targets (next category) --------------------------------------------------------------
RANK_KS = (1, 3, 5)


def multilabel_metrics(Y: np.ndarray, S: np.ndarray, exclude: np.ndarray | None = None,
                       ks: tuple[int, ...] = RANK_KS) -> dict[str, float]:
    """Ranking quality of per-customer target scores against what customers really bought.

    Y: (n, k) 0/1 bought in the horizon; S: (n, k) scores (higher = ranked first); exclude: (n, k) True
    where a target is left out of both the ranking and the truth (cross-sell view). Rows with nothing
    bought are left out. hit_rate_at_k: share of customers with at least one of the top k bought;
    precision_at_k: share of the top k bought; ndcg_at_k and ndcg (whole list): binary relevance.
    `rows` is the number of customers evaluated.
    """
    Y = np.asarray(Y, float).copy()
    S = np.asarray(S, float).copy()
    if exclude is not None:
        Y[exclude] = 0.0
        S[exclude] = -np.inf
    keep = Y.sum(1) > 0
    Y, S = Y[keep], S[keep]
    out: dict[str, float] = {"rows": float(keep.sum())}
    if not keep.any():
        return out
    order = np.argsort(-S, axis=1, kind="stable")
    rel = np.take_along_axis(Y, order, axis=1)
    if exclude is not None:  # excluded targets sort last; never count them
        rel = rel * np.isfinite(np.take_along_axis(S, order, axis=1))
    discount = 1.0 / np.log2(np.arange(2, Y.shape[1] + 2))
    ideal = np.cumsum(discount)
    n_rel = Y.sum(1).astype(int)
    for k in ks:
        kk = min(k, Y.shape[1])
        hits = rel[:, :kk].sum(1)
        out[f"hit_rate_at_{k}"] = float((hits > 0).mean())
        out[f"precision_at_{k}"] = float((hits / k).mean())
        dcg = (rel[:, :kk] * discount[:kk]).sum(1)
        out[f"ndcg_at_{k}"] = float((dcg / ideal[np.minimum(n_rel, kk) - 1]).mean())
    dcg = (rel * discount).sum(1)
    out["ndcg"] = float((dcg / ideal[n_rel - 1]).mean())
    return out


def mean_roc_auc(Y: np.ndarray, S: np.ndarray, keep: np.ndarray | None = None) -> float:
    """Mean over targets of each target's ROC-AUC (targets with one class only left out); with keep (n, k),
    each target's ROC-AUC over the rows where keep is True (the cross-sell view: customers who have not bought
    it in the lookback)."""
    aucs = []
    for j in range(Y.shape[1]):
        rows = keep[:, j] if keep is not None else slice(None)
        y, s = Y[rows, j], S[rows, j]
        if 0 < y.sum() < len(y):
            aucs.append(skm.roc_auc_score(y, s))
    return float(np.mean(aucs)) if aucs else float("nan")


def cumulative_share(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of customers taken, highest score first; share of the total of y they hold), from (0, 0)."""
    y = np.asarray(y, float)
    order = np.argsort(-np.asarray(score, float), kind="stable")
    share = np.concatenate([[0], np.cumsum(y[order]) / max(y.sum(), 1e-12)])
    return np.linspace(0, 1, len(share)), share


def save_plots(y: np.ndarray, scores: dict[str, np.ndarray], calibration: dict[str, np.ndarray],
               out_dir: Path, title: str) -> list[Path]:
    """ROC, PR, cumulative gains (every score) and calibration (raw vs calibrated) as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    y = np.asarray(y, float)

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in scores.items():
        fpr, tpr, _ = skm.roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {skm.roc_auc_score(y, s):.3f})", lw=2 if name == "model" else 1)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {title}")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(save_figure(fig, out_dir / "roc.png"))

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in scores.items():
        prec, rec, _ = skm.precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"{name} (AP {skm.average_precision_score(y, s):.3f})",
                lw=2 if name == "model" else 1)
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall: {title}")
    ax.legend(loc="upper right", fontsize=8)
    paths.append(save_figure(fig, out_dir / "pr.png"))

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in scores.items():
        ax.plot(*cumulative_share(y, s), label=name, lw=2 if name == "model" else 1)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="random")
    ax.set(xlabel="share of customers contacted (highest score first)", ylabel="share of positives reached",
           title=f"Cumulative gains: {title}")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(save_figure(fig, out_dir / "gains.png"))

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, p in calibration.items():
        frac, mean = _reliability(y, p)
        ax.plot(mean, frac, "o-", label=f"{name} (ECE {expected_calibration_error(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed rate", title=f"Calibration: {title}")
    ax.legend(loc="upper left", fontsize=8)
    paths.append(save_figure(fig, out_dir / "calibration.png"))
    return paths


def save_regression_plots(y: np.ndarray, preds: dict[str, np.ndarray], out_dir: Path, title: str) -> list[Path]:
    """Cumulative share of the actual amount captured (every prediction) and mean predicted vs actual
    amount per prediction decile (the model), as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, float)
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, p in preds.items():
        ax.plot(*cumulative_share(y, p), lw=2 if name == "model" else 1,
                label=f"{name} (normalised Gini {normalized_gini(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="random")
    ax.set(xlabel="share of customers (highest prediction first)", ylabel="share of actual spend",
           title=f"Spend captured: {title}")
    ax.legend(loc="lower right", fontsize=8)
    paths = [save_figure(fig, out_dir / "gains.png")]
    p = np.asarray(preds["model"], float)
    order = np.argsort(-p, kind="stable")
    parts = np.array_split(order, 10)
    fig, ax = plt.subplots(figsize=(6, 5))
    idx = np.arange(1, len(parts) + 1)
    ax.bar(idx - 0.2, [p[g].mean() if len(g) else 0 for g in parts], 0.4, label="predicted")
    ax.bar(idx + 0.2, [y[g].mean() if len(g) else 0 for g in parts], 0.4, label="actual")
    ax.set(xlabel="prediction decile (1 = highest)", ylabel="mean spend per customer", title=f"Deciles: {title}")
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "deciles.png"))
    return paths


def save_ranking_plot(results: dict[str, dict[str, float]], out_dir: Path, title: str) -> Path:
    """Hit rate at k for the model and each baseline, as a grouped bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 5))
    width = 0.8 / max(len(results), 1)
    for i, (name, m) in enumerate(results.items()):
        ax.bar(np.arange(len(RANK_KS)) + i * width, [m.get(f"hit_rate_at_{k}", np.nan) for k in RANK_KS], width,
               label=name)
    ax.set_xticks(np.arange(len(RANK_KS)) + 0.4 - width / 2, [f"hit rate @{k}" for k in RANK_KS])
    ax.set(ylim=(0, 1), title=f"Next category: {title}")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir / "hit_rate.png")


def _reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    frac, mean = [], []
    for b in range(bins):
        m = idx == b
        if m.sum() >= 5:
            frac.append(y[m].mean())
            mean.append(p[m].mean())
    return np.array(frac), np.array(mean)


def save_shap_summary(contributions: np.ndarray, X_values: np.ndarray, feature_names: list[str], path: Path,
                      max_display: int = 15) -> Path:
    """A SHAP beeswarm summary of the test rows' contributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    shap.summary_plot(contributions, X_values, feature_names=feature_names, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.set_size_inches(8, 6)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:  # noqa: ANN001
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


LOWER_IS_BETTER = ("brier", "ece", "log_loss", "mae", "rmse", "decile_mape")  # metrics where the smaller wins


def comparison_columns(kind: str) -> tuple[str, ...]:
    """The metrics shown side by side for the model and its baselines, by kind of task."""
    return {"binary": ("roc_auc", "pr_auc", "lift_top10", "capture_top10"),
            "regression": ("normalized_gini", "spearman", "decile_mape", "total_spend_error", "mae"),
            "uplift": ("qini", "auuc", "lift_at_share", "incremental_purchases_at_share",
                       "incremental_revenue_at_share"),
            "multilabel": ("hit_rate_at_1", "hit_rate_at_3", "hit_rate_at_5", "precision_at_3", "ndcg", "mean_roc_auc",
                           "xsell_hit_rate_at_3", "xsell_precision_at_3", "xsell_ndcg", "xsell_mean_roc_auc")}[kind]
