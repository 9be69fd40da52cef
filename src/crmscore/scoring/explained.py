"""A model's scores with their reasons: the one place where batch files (crmscore.scoring.batch) and the
service's models beyond plain binary (crmscore.scoring.online) turn a TrainedModel's explanations into
reasons (crmscore.explain.reasons.build_reasons). The model layer scores and explains; wording a reason
is the explain layer's, so the model does not build reasons itself.

The reasons of a frame are built column-wise (build_reasons over all rows of an explanation at once), and
batch files take them as Arrow columns (reasons='arrow'), with no Python object per reason.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from crmscore.explain.reasons import ReasonTable, build_reasons
from crmscore.models.bundle import TrainedModel


def score_with_reasons(bundle: TrainedModel, df: pd.DataFrame, *, explain: bool = True, top_k: int = 5,
                       keep_regular: bool = False, max_targets: int = 5, lang: str = "en",
                       reasons: str = "records") -> pd.DataFrame:
    """TrainedModel.score, plus with explain=True a `reasons` column: per row a list of top_k dicts with
    feature, value, contribution, probability_change (probability models) or change (regression: in the
    score's unit, currency) and text, in `lang` (en | zh). Multilabel models: reasons explain the top
    category (an empty list when every category is left out).

    reasons='arrow' (batch files; models with one booster): `reasons` is an Arrow-backed list<struct> column
    with each value as text (crmscore.explain.reasons.ReasonTable.arrow) and reason_1..k hold the sentences;
    multilabel models always give lists of dicts."""
    out, parts = bundle.explained(df, explain=explain, keep_regular=keep_regular, max_targets=max_targets)
    if not explain:
        return out
    frame = df.reset_index(drop=True)
    if reasons == "arrow" and bundle.kind != "multilabel" and len(parts) == 1:
        part = parts[0]
        expl = part.explanation
        table = build_reasons(bundle.feature_set, expl.contributions, expl.base_value, expl.link, expl.feature_names,
                              frame.iloc[part.rows].reset_index(drop=True), top_k, part.reason_up, part.reason_down,
                              lang)
        arrow = table.arrow()
        out["reasons"] = pd.arrays.ArrowExtensionArray(arrow)
        for j, sentences in enumerate(ReasonTable.sentence_columns(arrow, table.index.shape[1])):
            out[f"reason_{j + 1}"] = pd.array(sentences, dtype="str")  # Arrow to Arrow: no Python string
        return out
    lists: list[list[dict[str, Any]]] = [[] for _ in range(len(out))]
    for part in parts:
        expl = part.explanation
        table = build_reasons(bundle.feature_set, expl.contributions, expl.base_value, expl.link, expl.feature_names,
                              frame.iloc[part.rows].reset_index(drop=True), top_k, part.reason_up, part.reason_down,
                              lang)
        for r, rs in zip(part.rows, table.records()):
            lists[r] = rs
    out["reasons"] = lists
    return out
