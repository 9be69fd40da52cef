"""The four kinds of customer a campaign meets, from an uplift model's lift and the chance of buying without it.

Kept apart from the uplift task (crmscore.models.uplift) so that the model bundle, which scores, and the
campaign report can place customers without importing the task and its training code.
"""

from __future__ import annotations

import numpy as np

QUADRANTS = ("persuadable", "sure_thing", "lost_cause", "do_not_disturb")


def quadrant(lift: np.ndarray, p_control: np.ndarray, min_lift: float, sure_thing_probability: float) -> np.ndarray:
    """Per customer: 'persuadable' (lift >= min_lift: buys because of the campaign), 'do_not_disturb' (lift <=
    -min_lift: the campaign puts them off), else 'sure_thing' (buys anyway: probability without the campaign
    >= sure_thing_probability) or 'lost_cause' (buys neither way)."""
    lift, p0 = np.asarray(lift, float), np.asarray(p_control, float)
    return np.where(lift >= min_lift, "persuadable",
                    np.where(lift <= -min_lift, "do_not_disturb",
                             np.where(p0 >= sure_thing_probability, "sure_thing", "lost_cause"))).astype(object)
