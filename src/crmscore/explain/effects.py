"""What a reason does to the score: the spaces explanations live in, and a reason's effect.

Spaces. Every explanation is given in its score's own space (crmscore.models.estimator.CustomerModel.explain),
so that the base value and the contributions add up to the score exactly:
- binary models (churn, next-purchase, lookalike similarity): calibrated log-odds,
  sigmoid(base_value + sum(contributions)) = score;
- expected spend (Tweedie): the log of the predicted amount, exp(base_value + sum(contributions)) = score;
- next-category: per category, that category's calibrated log-odds (reasons explain the top category).

A reason's effect. Reasons are ordered by |contribution|, largest first (ties: the model's column order).
The effect of the j-th reason is the step it adds to a sequential walk from the base value to the score,
in the score's unit (probability, or currency):

    effect_j = f(base + c_1 + ... + c_j) - f(base + c_1 + ... + c_{j-1})

where f is the inverse link (sigmoid or exp). Why sequential rather than leave-one-out: the effects of
all features then add up to score - f(base), the operations page's waterfall is the same numbers, and the
effect of the j-th reason does not depend on how many reasons are asked for. Its starting point f(base)
is the score at the model's base value (the cover-weighted average margin over the training rows), which
is not the average score: it is labelled as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crmscore.models.space import LINKS, inverse_link, reason_order  # noqa: F401  (re-exported)

def effect_path(link: str, base_value: float, contributions: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The scores along the walk: f(base), f(base + c_1), ..., f(base + c_1 + ... + c_k) for the features in
    `order` (k + 1 values, in the score's unit)."""
    c = np.asarray(contributions, dtype=float)[np.asarray(order, dtype=np.int64)]
    return inverse_link(link, base_value + np.concatenate([[0.0], np.cumsum(c)]))


def sequential_effects(link: str, base_value: float, contributions: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The effect of each feature in `order` (see the module docstring): the change in the score, in its
    unit, as its contribution is added after those before it in the order. The one definition of a
    reason's effect: the API, batch files and the operations page all take it from here."""
    return np.diff(effect_path(link, base_value, contributions, order))


def waterfall(link: str, base_value: float, contributions: np.ndarray, names: list[str], k: int) -> dict[str, Any]:
    """The operations page's waterfall of one customer, in the score's unit: `base` (the score at the base
    value), one step per reason (the first k in reason order; each step's size is the reason's effect),
    `other` (the remaining features together) and `final` (the score). Steps add up to the score."""
    c = np.asarray(contributions, dtype=float)
    order = reason_order(c, k)
    path = effect_path(link, base_value, c, order)
    steps = [{"feature": names[i], "contribution": float(c[i]), "start": float(path[j]), "end": float(path[j + 1])}
             for j, i in enumerate(order)]
    final = float(inverse_link(link, base_value + c.sum()))
    return {"base": float(path[0]), "steps": steps,
            "other": {"count": len(c) - len(order), "start": float(path[-1]), "end": final}, "final": final}
