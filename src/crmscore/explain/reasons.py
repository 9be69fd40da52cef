"""Plain-language reasons: a feature's declared description and its value, and which way it pushes the score.

Example: "No purchase for 92 days, about 3.1 times this customer's usual gap: raises churn risk".
The sentence comes from the feature declaration (crmscore.features.definitions), so a feature added
there explains itself without code here; the few templates below only make common reasons read better.
Other languages (`lang="zh"`): the description from crmscore.features.translations, the sentence
templates and the effect ("raises churn risk") from the translation files of crmscore.explain.i18n.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from crmscore.explain.effects import reason_order, sequential_effects
from crmscore.features.definitions import Feature, FeatureSet


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
    if unit in ("orders", "count"):  # an expectation (BG/NBD's 0.54 orders) keeps a decimal: "1" would overstate it
        return f"{v:.0f}" if v == round(v) else f"{v:.1f}"
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
                reason_up: str, reason_down: str, lang: str = "en") -> str:
    """One reason sentence: what the feature says about this customer, then its effect on the score.

    lang: 'en' (the declarations' English) or 'zh' (Simplified Chinese)."""
    effect = reason_up if contribution > 0 else reason_down
    if lang != "en":
        return _translated_reason(feature, name, value, row, effect, lang)
    return f"{_core(feature, name, value, row)}: {effect}"


def plain_value(value: Any) -> Any:
    """A feature value as reasons carry it (JSON-friendly): numbers as float, missing as None, text as text."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        return None if math.isnan(v) else v
    return str(value)


def build_reasons(feature_set: FeatureSet, expl_contributions: np.ndarray, base_value: float, link: str,
                  names: list[str], values: Mapping[str, Any], top_k: int, reason_up: str, reason_down: str,
                  lang: str = "en", context: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The top_k reasons of one customer: the one builder for batch files, the API and the operations page.

    expl_contributions: the customer's contributions in the score's space (crmscore.explain.effects), in
    the order of `names`; values: the customer's feature values by name; context: other values a sentence
    may use (recency_days), default values. Each reason: feature, value (plain_value), contribution, effect
    (the sequential effect in the score's unit: probability for link 'logit', currency or value otherwise),
    stored as `probability_change` (logit) or `change` (other links), and text.
    """
    c = np.asarray(expl_contributions, dtype=float)
    order = reason_order(c, top_k)
    effects = sequential_effects(link, base_value, c, order)
    key = "probability_change" if link == "logit" else "change"
    ctx = values if context is None else context
    out = []
    for i, effect in zip(order, effects):
        name = names[i]
        value = plain_value(values.get(name))
        contribution = float(c[i])
        out.append({"feature": name, "value": value, "contribution": contribution, key: float(effect),
                    "text": reason_text(feature_set.get(name), name, value, contribution, ctx, reason_up, reason_down,
                                        lang)})
    return out


# -- other languages ------------------------------------------------------------------------------
def format_value_in(value: Any, unit: str, lang: str) -> str:
    """format_value in another language: the same numbers, the language's units and quotes."""
    from crmscore.explain import i18n

    if lang == "en":
        return format_value(value, unit)
    if _is_missing(value):
        return i18n.text(lang, "reason.unknown")
    if unit == "" or isinstance(value, str):
        return i18n.text(lang, "reason.quoted", value=value)
    if unit == "days":
        v = float(value)
        return i18n.text(lang, "reason.day" if round(v) == 1 else "reason.days", n=f"{v:.0f}")
    return format_value(value, unit)


def _translated_reason(feature: Feature | None, name: str, value: Any, row: Mapping[str, Any], effect: str,
                       lang: str) -> str:
    from crmscore.features.translations import description
    from crmscore.explain import i18n

    def t(key: str, **kw: Any) -> str:
        return i18n.text(lang, f"reason.{key}", **kw)

    if feature is None:
        core = t("unknown_feature", name=name, value=format_value_in(value, "" if isinstance(value, str) else "value",
                                                                      lang))
    elif _is_missing(value):
        core = t("core_missing", desc=description(feature, lang))
    elif name == "recency_days":
        core = t("recency", days=format_value_in(value, "days", lang))
    elif name == "recency_gap_ratio":
        rec = row.get("recency_days")
        ratio = f"{float(value):.1f}"
        core = (t("recency_gap", days=format_value_in(rec, "days", lang), ratio=ratio) if not _is_missing(rec)
                else t("gap_only", ratio=ratio))
    elif m := re.fullmatch(r"frequency_(\d+)d", name):
        core = t("frequency", w=m.group(1), n=f"{float(value):.0f}")
    elif m := re.fullmatch(r"monetary_(\d+)d", name):
        core = t("monetary", w=m.group(1), amount=format_value(value, "currency"))
    elif feature.stage == "table":
        core = t("table", desc=description(feature, lang), value=format_value_in(value, feature.unit, lang))
    else:
        core = t("generic", desc=description(feature, lang), value=format_value_in(value, feature.unit, lang))
    return t("sentence", core=core, effect=i18n.effect(lang, effect))
