"""How well a ranking finds hidden seed members, and the references it must beat.

The protocol: a share of the seed (default 25%) is hidden before training; the hidden members stay in the
unlabelled customers. Every customer outside the training seed is ranked; `recall_topP` is the share of
hidden members found in the top P% of that ranking, `lift_topP` = recall / P (1 = random).

References on the same candidates: cosine similarity to the training seed's centroid on standardised
features (the classic lookalike baseline), and random ranking (expected recall = P, exactly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SHARES = (0.01, 0.05, 0.10, 0.20)
Z_CLIP = 5.0  # standardised values beyond +-5 are clipped: a few huge spenders must not set every direction


def share_key(share: float) -> str:
    return f"top{round(share * 100):g}"


def recall_at(hidden: np.ndarray, score: np.ndarray, shares: tuple[float, ...] = SHARES) -> dict[str, float]:
    """Recall of hidden seed members in the top share of the ranking, and lift over random.

    hidden: 1 for a hidden seed member, 0 for any other candidate; score: higher = more seed-like.
    Ties are broken by position (stable), so a constant score behaves like the given order.
    """
    hidden = np.asarray(hidden, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    found = np.cumsum(hidden[order])
    total = hidden.sum()
    out = {}
    for share in shares:
        n_top = max(1, int(round(len(hidden) * share)))
        recall = float(found[n_top - 1] / total) if total else float("nan")
        out[f"recall_{share_key(share)}"] = recall
        out[f"lift_{share_key(share)}"] = recall / (n_top / len(hidden))
    return out


def random_reference(n_candidates: int, shares: tuple[float, ...] = SHARES) -> dict[str, float]:
    """Expected recall and lift of a random ranking (recall = the share of candidates taken)."""
    out = {}
    for share in shares:
        n_top = max(1, int(round(n_candidates * share)))
        out[f"recall_{share_key(share)}"] = n_top / n_candidates
        out[f"lift_{share_key(share)}"] = 1.0
    return out


class Standardiser:
    """Numeric columns to z-scores (missing = the mean, clipped at +-Z_CLIP); categories one-hot, standardised
    the same way; constant columns dropped. Fitted on the whole population, so 0 = the average customer."""

    def fit(self, X: pd.DataFrame) -> Standardiser:
        M = self._raw(X)
        self.columns_ = list(M.columns)
        self.mean_ = M.mean()
        std = M.std(ddof=0)
        keep = std > 1e-12
        self.columns_ = [c for c in self.columns_ if keep[c]]
        self.mean_, self.std_ = self.mean_[self.columns_], std[self.columns_]
        return self

    def _raw(self, X: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for c in X.columns:
            col = X[c]
            if pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
                parts.append(pd.to_numeric(col, errors="coerce").astype(float).rename(c))
            else:
                parts.append(pd.get_dummies(col.astype("string"), prefix=c, dtype=float))
        return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=X.index)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        M = self._raw(X).reindex(columns=self.columns_, fill_value=0.0)
        Z = ((M - self.mean_) / self.std_).fillna(0.0).to_numpy()
        return np.clip(Z, -Z_CLIP, Z_CLIP)


def centroid_scores(population: pd.DataFrame, seed_rows: np.ndarray, candidate_rows: np.ndarray) -> np.ndarray:
    """Cosine similarity of each candidate to the mean standardised vector of the seed rows.

    population: feature columns only (the model's features); seed_rows / candidate_rows: positions.
    """
    Z = Standardiser().fit(population).transform(population)
    centroid = Z[seed_rows].mean(0)
    C = Z[candidate_rows]
    norms = np.linalg.norm(C, axis=1) * (np.linalg.norm(centroid) or 1.0)
    return (C @ centroid) / np.where(norms > 0, norms, 1.0)


def curve_sizes(n_train_seed: int, start: int = 25) -> list[int]:
    """Seed sizes for the learning curve: 25, 50, 100, ... below the training seed, then the seed itself."""
    sizes, n = [], start
    while n < n_train_seed:
        sizes.append(n)
        n *= 2
    return [*sizes, n_train_seed]


def needed_seed_size(curve: pd.DataFrame) -> int | None:
    """The smallest training-seed size from which the model's recall at 10% beats the centroid's at every
    larger size tried; None when it does not beat it at the largest."""
    ahead = (curve["model"] > curve["centroid"]).to_numpy()
    if not len(ahead) or not ahead[-1]:
        return None
    i = len(ahead) - 1
    while i > 0 and ahead[i - 1]:
        i -= 1
    return int(curve["seed_size"].iloc[i])


def save_plots(hidden: np.ndarray, scores: dict[str, np.ndarray], curve: pd.DataFrame, out_dir: Path,
               title: str) -> list[Path]:
    """Recall of hidden seed members against the share of customers taken (every ranking), and recall at 10%
    against the training seed size (model vs centroid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crmscore.models.evaluation import save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    hidden = np.asarray(hidden, float)
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, s in scores.items():
        order = np.argsort(-np.asarray(s, float), kind="stable")
        gains = np.concatenate([[0], np.cumsum(hidden[order]) / max(hidden.sum(), 1)])
        ax.plot(np.linspace(0, 1, len(gains)), gains, label=name, lw=2 if name == "model" else 1)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="random")
    ax.set(xlim=(0, 0.5), xlabel="share of customers taken (most similar first)",
           ylabel="share of hidden seed members found", title=f"Recall of the hidden seed: {title}")
    ax.legend(loc="lower right", fontsize=8)
    paths = [save_figure(fig, out_dir / "recall_curve.png")]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(curve["seed_size"], curve["model"], "o-", lw=2, label="model")
    ax.plot(curve["seed_size"], curve["centroid"], "s--", label="centroid")
    ax.axhline(0.10, color="k", ls=":", lw=0.8, label="random")
    ax.set(xscale="log", xlabel="training seed members", ylabel="recall of hidden seed in top 10%",
           title=f"Seed size needed: {title}")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(save_figure(fig, out_dir / "seed_size_curve.png"))
    return paths
