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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crmscore.explain.effects import reason_order, sequential_effects
from crmscore.models.space import reason_orders
from crmscore.features.definitions import Feature, FeatureSet


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value) or (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def _days(v: float) -> str:
    return f"{v:.0f} day" if round(v) == 1 else f"{v:.0f} days"


def _hour(v: float) -> str:
    return f"{int(v) % 24:02d}:{int(round((v % 1) * 60)) % 60:02d}"


# How a number reads in each unit, from a float: the one definition, used a value at a time (format_value) and
# for a whole column (build_reasons fills a feature's template from it).
NUMBER_FORMATS: dict[str, Any] = {
    "days": _days,
    # an expectation (BG/NBD's 0.54 orders) keeps a decimal: "1" would overstate it
    "orders": lambda v: f"{v:.0f}" if v == round(v) else f"{v:.1f}",
    "count": lambda v: f"{v:.0f}" if v == round(v) else f"{v:.1f}",
    "currency": lambda v: f"{v:,.2f}",
    "share": lambda v: f"{v:.0%}",
    "ratio": lambda v: f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}",
    "hour": _hour,
    # frequency_<w>d's sentence: "3 orders", "1 order"
    "order_phrase": lambda v: f"{v:.0f} order{'s' if round(v) != 1 else ''}",
}


def format_value(value: Any, unit: str) -> str:
    """A value as operations staff read it: '92 days', '34%', '1,204.50', "'Month-to-month'"."""
    if _is_missing(value):
        return "unknown"
    if unit == "" or isinstance(value, str):
        return f"'{value}'"
    fmt = NUMBER_FORMATS.get(unit)
    return fmt(float(value)) if fmt is not None else f"{float(value):g}"


def _template(feature: Feature | None, name: str) -> tuple[str, str, str] | None:
    """A feature's English sentence core as head + its value in `unit` + tail, for a value that is not
    missing; None where the sentence needs more than the value (an undeclared feature, the gap ratio)."""
    if feature is None or name == "recency_gap_ratio":
        return None
    if name == "recency_days":
        return "No purchase for ", "days", ""
    m = re.fullmatch(r"frequency_(\d+)d", name)
    if m:
        return "", "order_phrase", f" in the last {m.group(1)} days"
    m = re.fullmatch(r"monetary_(\d+)d", name)
    if m:
        return "Spent ", "currency", f" in the last {m.group(1)} days"
    if feature.stage == "table":
        return f"{feature.description} is ", feature.unit, ""
    return f"{feature.description[0].upper()}{feature.description[1:]}: ", feature.unit, ""


def _core(feature: Feature | None, name: str, value: Any, row: Mapping[str, Any]) -> str:
    if feature is None:
        return f"{name} is {format_value(value, '' if isinstance(value, str) else 'value')}"
    if _is_missing(value):
        return f"{feature.description[0].upper()}{feature.description[1:]}: unknown"
    if name == "recency_gap_ratio":
        rec = row.get("recency_days")
        lead = f"No purchase for {format_value(rec, 'days')}, about " if not _is_missing(rec) else "About "
        return f"{lead}{float(value):.1f} times this customer's usual gap"
    head, unit, tail = _template(feature, name)  # type: ignore[misc]
    return f"{head}{format_value(value, unit)}{tail}"


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


# A sentence reads one other value of its customer besides the feature's own (crmscore.explain.reasons._core).
CONTEXT_OF = {"recency_gap_ratio": "recency_days"}
_LOOP_BELOW = 16
# units whose text reads the number rounded to a whole (f"{v:.0f}", round(v)): one sentence per whole number
_WHOLE_UNITS = ("days", "order_phrase")  # fewer cells of a feature than this: format each cell, grouping costs more than it saves


@dataclass
class ReasonTable:
    """The top-k reasons of n customers, column-wise: (n, k) arrays, reason j of customer r at [r, j].

    index: the feature's column in `names`; contribution: in the score's space; effect: the sequential effect
    in the score's unit (crmscore.explain.effects), stored as `key` ('probability_change' or 'change');
    value: the feature value as reasons carry it (plain_value), value_text: as batch files store it (text,
    None when missing); text: the sentence.
    """

    names: list[str]
    index: np.ndarray
    contribution: np.ndarray
    effect: np.ndarray
    value: np.ndarray
    value_text: np.ndarray
    text: np.ndarray
    key: str

    def __len__(self) -> int:
        return len(self.index)

    def records(self) -> list[list[dict[str, Any]]]:
        """Per customer, a list of dicts (feature, value, contribution, the effect's key, text): the API's form."""
        names, key = self.names, self.key
        return [[{"feature": names[i], "value": v, "contribution": float(c), key: float(e), "text": t}
                 for i, v, c, e, t in zip(ix, vs, cs, es, ts)]
                for ix, vs, cs, es, ts in zip(self.index.tolist(), self.value.tolist(), self.contribution.tolist(),
                                              self.effect.tolist(), self.text.tolist())]

    def arrow(self) -> Any:
        """The batch file's `reasons` column: a list<struct<feature, value, contribution, key, text>> Arrow
        array, one list per customer; the value as text (values mix numbers and categories across features).
        Built from the flat arrays, without a Python object per reason."""
        import pyarrow as pa

        n, k = self.index.shape
        flat = self.index.ravel()
        fields = [pa.array(self.names, pa.string()).take(pa.array(flat)),
                  pa.array(self.value_text.ravel(), pa.string()),
                  pa.array(self.contribution.ravel(), pa.float64()),
                  pa.array(self.effect.ravel(), pa.float64()),
                  pa.array(self.text.ravel(), pa.string())]
        struct = pa.StructArray.from_arrays(fields, names=["feature", "value", "contribution", self.key, "text"])
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * k, pa.int32()), struct)

    @staticmethod
    def sentence_columns(reasons: Any, k: int) -> list[Any]:
        """reason_1..k of the customers as Arrow string arrays, taken from an `arrow()` column's texts (its
        lists hold k reasons each), so the batch file's sentence columns cost no second Python conversion."""
        texts = reasons.values.field("text")
        n = len(reasons)
        return [texts.take(np.arange(j, n * k, k)) for j in range(k)]


def build_reasons(feature_set: FeatureSet, expl_contributions: np.ndarray, base_value: float, link: str,
                  names: list[str], values: Mapping[str, Any], top_k: int, reason_up: str, reason_down: str,
                  lang: str = "en", context: Mapping[str, Any] | None = None) -> Any:
    """The top_k reasons of customers: the one builder for batch files, the API and the operations page.

    Many customers: expl_contributions (n, n_features) in the score's space (crmscore.explain.effects), in
    the order of `names`; values: feature values by name, each an array of n (a DataFrame serves); returns a
    ReasonTable. One customer: expl_contributions of one row (1-D) and values by name as scalars; returns its
    list of reasons (ReasonTable.records). context: other values a sentence may use (recency_days), default
    values. Each reason: feature, value (plain_value), contribution, effect (the sequential effect in the
    score's unit: probability for link 'logit', currency or value otherwise), stored as `probability_change`
    (logit) or `change` (other links), and text.

    Column-wise: the top-k selection and the effects are array operations over all rows, and a sentence is
    made once per distinct (feature, value, context value, direction) and shared by every customer who has it.
    """
    c = np.asarray(expl_contributions, dtype=float)
    k = max(0, min(top_k, c.shape[-1]))
    key = "probability_change" if link == "logit" else "change"
    ctx = values if context is None else context
    if c.ndim == 1:  # one customer (the service): the same order, effects and sentences, without array set-up
        order1 = reason_order(c, k)
        chosen1 = c[order1]
        out = []
        for i, contribution, effect in zip(order1.tolist(), chosen1.tolist(),
                                           sequential_effects(link, base_value, chosen1).tolist()):
            name = names[i]
            value = plain_value(values.get(name))
            out.append({"feature": name, "value": value, "contribution": contribution, key: effect,
                        "text": reason_text(feature_set.get(name), name, value, contribution, ctx, reason_up,
                                            reason_down, lang)})
        return out
    n_rows = len(c)
    order = reason_orders(c, k)  # as reason_order, row by row
    chosen = np.take_along_axis(c, order, axis=1)
    effects = sequential_effects(link, base_value, chosen)
    value = np.empty((n_rows, k), dtype=object)
    value_text = np.empty((n_rows, k), dtype=object)
    text = np.empty((n_rows, k), dtype=object)
    flat_order = order.ravel()
    rows_of = np.repeat(np.arange(n_rows), k)
    up = (chosen > 0).ravel()
    by_feature = np.argsort(flat_order, kind="stable")
    bounds = np.searchsorted(flat_order[by_feature], np.arange(len(names) + 1))
    vflat, tflat, xflat = value.reshape(-1), value_text.reshape(-1), text.reshape(-1)
    for i, name in enumerate(names):
        cells = by_feature[bounds[i]:bounds[i + 1]]
        if not len(cells):
            continue
        rows = rows_of[cells]
        column = _column(values, name, n_rows)[rows]
        ctx_name = CONTEXT_OF.get(name)
        ctx_column = _column(ctx, ctx_name, n_rows)[rows] if ctx_name else None
        feature = feature_set.get(name)

        def sentence(j: int) -> tuple[Any, str | None, str]:
            v = plain_value(column[j])
            row = {ctx_name: ctx_column[j]} if ctx_name else {}
            t = reason_text(feature, name, v, 1.0 if up[cells[j]] else -1.0, row, reason_up, reason_down, lang)
            return v, None if v is None else str(v), t

        if len(cells) < _LOOP_BELOW:
            for j, cell in enumerate(cells):
                vflat[cell], tflat[cell], xflat[cell] = sentence(j)
            continue
        numeric = column.dtype.kind in "fiu"
        # numbers grouped by their bits: -0.0 reads "-0", 0.0 reads "0"
        same = column.astype(np.float64).view(np.int64) if numeric else column
        template = _template(feature, name) if lang == "en" else None
        if numeric and template is not None and template[1] in NUMBER_FORMATS:
            # the feature's sentence template filled once per distinct value, for every cell that has it
            codes, uniques = pd.factorize(same, use_na_sentinel=False)
            numbers = uniques.view(np.float64).tolist()
            plain = _objects([None if v != v else v for v in numbers])
            vflat[cells], tflat[cells] = plain[codes], _objects([None if v != v else str(v) for v in numbers])[codes]
            head, unit, tail = template
            if unit in _WHOLE_UNITS:  # the text depends on the rounded number only (rint keeps -0.0)
                codes, uniques = pd.factorize(np.rint(same.view(np.float64)).view(np.int64), use_na_sentinel=False)
                numbers = uniques.view(np.float64).tolist()
            fmt = NUMBER_FORMATS[unit]
            cores = [None if v != v else f"{head}{fmt(v)}{tail}" for v in numbers]
            said = [_objects([reason_text(feature, name, None, sign, {}, reason_up, reason_down, lang) if c is None
                              else f"{c}: {effect}" for c in cores])
                    for sign, effect in ((1.0, reason_up), (-1.0, reason_down))]
            xflat[cells] = np.where(up[cells], said[0][codes], said[1][codes])
            continue
        group = pd.factorize(same, use_na_sentinel=False)[0].astype(np.int64) * 2 + up[cells]
        if ctx_column is not None:
            group = group * (len(cells) * 2) + pd.factorize(ctx_column, use_na_sentinel=False)[0]
        _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
        made = [sentence(j) for j in first]
        for target, part in zip((vflat, tflat, xflat), zip(*made)):
            target[cells] = np.asarray(part + (None,), dtype=object)[:-1][inverse]
    return ReasonTable(list(names), order, chosen, effects, value, value_text, text, key)


def _objects(items: list) -> np.ndarray:
    """A 1-D object array of items (strings stay whole)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _column(values: Mapping[str, Any], name: str, n_rows: int) -> np.ndarray:
    """A feature's values for every row, as an array (all missing when `values` lacks the feature)."""
    if name in values:
        col = values[name]
        return col.to_numpy() if hasattr(col, "to_numpy") else np.asarray(col, dtype=object)
    return np.full(n_rows, None, dtype=object)


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
