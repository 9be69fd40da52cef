"""A model's scores with their reasons: the one place where batch files (crmscore.scoring.batch) and the
service's models beyond plain binary (crmscore.scoring.online) turn a TrainedModel's explanations into
reasons (crmscore.explain.reasons.build_reasons). The model layer scores and explains; wording a reason
is the explain layer's, so the model does not build reasons itself."""

from __future__ import annotations

from typing import Any

import pandas as pd

from crmscore.explain.reasons import build_reasons
from crmscore.models.bundle import TrainedModel


def score_with_reasons(bundle: TrainedModel, df: pd.DataFrame, *, explain: bool = True, top_k: int = 5,
                       keep_regular: bool = False, max_targets: int = 5, lang: str = "en") -> pd.DataFrame:
    """TrainedModel.score, plus with explain=True a `reasons` column: per row a list of top_k dicts with
    feature, value, contribution, probability_change (probability models) or change (regression: in the
    score's unit, currency) and text, in `lang` (en | zh). Multilabel models: reasons explain the top
    category (an empty list when every category is left out)."""
    out, parts = bundle.explained(df, explain=explain, keep_regular=keep_regular, max_targets=max_targets)
    if not explain:
        return out
    reasons: list[list[dict[str, Any]]] = [[] for _ in range(len(out))]
    frame = df.reset_index(drop=True)
    for part in parts:
        expl = part.explanation
        rows = frame.iloc[part.rows].to_dict("records")
        for j, (r, row) in enumerate(zip(part.rows, rows)):
            reasons[r] = build_reasons(bundle.feature_set, expl.contributions[j], expl.base_value, expl.link,
                                       expl.feature_names, row, top_k, part.reason_up, part.reason_down, lang)
    out["reasons"] = reasons
    return out
