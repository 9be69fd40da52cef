"""Plain-language reasons: a feature's declared description and its value, and which way it pushes the score.

Example: "No purchase for 92 days, about 3.1 times this customer's usual gap: raises churn risk".
The sentence comes from the feature declaration (crmscore.features.definitions), so a feature added
there explains itself without code here; the few templates below only make common reasons read better.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from crmscore.features.definitions import Feature


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value) or (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def format_value(value: Any, unit: str) -> str:
    """A value as operations staff read it: '92 days', '34%', '1,204.50', "'Month-to-month'"."""
    if _is_missing(value):
        return "unknown"
    if unit == "" or isinstance(value, str):
        return f"'{value}'"
    v = float(value)
    if unit == "days":
        return f"{v:.0f} day" if round(v) == 1 else f"{v:.0f} days"
    if unit in ("orders", "count"):
        return f"{v:.0f}"
    if unit == "currency":
        return f"{v:,.2f}"
    if unit == "share":
        return f"{v:.0%}"
    if unit == "ratio":
        return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"
    if unit == "hour":
        return f"{int(v) % 24:02d}:{int(round((v % 1) * 60)) % 60:02d}"
    return f"{v:g}"


def _core(feature: Feature | None, name: str, value: Any, row: Mapping[str, Any]) -> str:
    if feature is None:
        return f"{name} is {format_value(value, '' if isinstance(value, str) else 'value')}"
    if _is_missing(value):
        return f"{feature.description[0].upper()}{feature.description[1:]}: unknown"
    if name == "recency_days":
        return f"No purchase for {format_value(value, 'days')}"
    if name == "recency_gap_ratio":
        rec = row.get("recency_days")
        lead = f"No purchase for {format_value(rec, 'days')}, about " if not _is_missing(rec) else "About "
        return f"{lead}{float(value):.1f} times this customer's usual gap"
    m = re.fullmatch(r"frequency_(\d+)d", name)
    if m:
        n = float(value)
        return f"{n:.0f} order{'s' if round(n) != 1 else ''} in the last {m.group(1)} days"
    m = re.fullmatch(r"monetary_(\d+)d", name)
    if m:
        return f"Spent {format_value(value, 'currency')} in the last {m.group(1)} days"
    if feature.stage == "table":
        return f"{feature.description} is {format_value(value, feature.unit)}"
    return f"{feature.description[0].upper()}{feature.description[1:]}: {format_value(value, feature.unit)}"


def reason_text(feature: Feature | None, name: str, value: Any, contribution: float, row: Mapping[str, Any],
                reason_up: str, reason_down: str) -> str:
    """One reason sentence: what the feature says about this customer, then its effect on the score."""
    effect = reason_up if contribution > 0 else reason_down
    return f"{_core(feature, name, value, row)}: {effect}"
