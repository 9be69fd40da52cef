"""Metrics and plots for out-of-time evaluation of binary scores (model and baselines alike)."""

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


def quality_grade(model_auc: float, best_baseline_auc: float) -> str:
    """A: beats the best baseline's ROC-AUC by 0.02 or more; B: beats it by less; C: does not beat it."""
    gain = model_auc - best_baseline_auc
    return "A" if gain >= 0.02 else "B" if gain > 0 else "C"


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
    paths.append(_save(fig, out_dir / "roc.png"))

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in scores.items():
        prec, rec, _ = skm.precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"{name} (AP {skm.average_precision_score(y, s):.3f})",
                lw=2 if name == "model" else 1)
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall: {title}")
    ax.legend(loc="upper right", fontsize=8)
    paths.append(_save(fig, out_dir / "pr.png"))

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in scores.items():
        order = np.argsort(-np.asarray(s, float), kind="stable")
        gains = np.concatenate([[0], np.cumsum(y[order]) / max(y.sum(), 1)])
        ax.plot(np.linspace(0, 1, len(gains)), gains, label=name, lw=2 if name == "model" else 1)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="random")
    ax.set(xlabel="share of customers contacted (highest score first)", ylabel="share of positives reached",
           title=f"Cumulative gains: {title}")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(_save(fig, out_dir / "gains.png"))

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, p in calibration.items():
        frac, mean = _reliability(y, p)
        ax.plot(mean, frac, "o-", label=f"{name} (ECE {expected_calibration_error(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed rate", title=f"Calibration: {title}")
    ax.legend(loc="upper left", fontsize=8)
    paths.append(_save(fig, out_dir / "calibration.png"))
    return paths


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
    return _save(fig, path)


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
