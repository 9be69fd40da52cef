"""Feature descriptions in other languages, next to the declarations in crmscore.features.definitions.

The English description stays the one in each `Feature` (saved with every model, so a model trained
today explains itself the same way tomorrow); this module adds Simplified Chinese for every declaration,
keyed by the feature's name pattern. Placeholders: `{w}` the feature's window in days, `{h}` the
evening hour, `{item}` the category, channel, event type or attribute the English description names
(taken from it, so data-dependent features need no entry of their own). A feature with no entry (a
feature table's own columns) keeps its description: there it is the column name, not English prose.
`tests/test_ui.py` checks that every declared feature has a translation.
"""

from __future__ import annotations

import re

from crmscore.features.definitions import Feature

# (name pattern, pattern the English description must match to extract {item} (or None), Chinese template)
ZH: list[tuple[str, str | None, str]] = [
    (r"recency_days", None, "距上次购买的天数"),
    (r"first_purchase_days", None, "距首次购买的天数"),
    (r"frequency_total", None, "累计订单数"),
    (r"monetary_total", None, "累计消费金额"),
    (r"frequency_prev_90d", None, "前一个90天（91至180天前）的订单数"),
    (r"monetary_prev_90d", None, "前一个90天（91至180天前）的消费金额"),
    (r"frequency_\d+d", None, "近{w}天的订单数"),
    (r"monetary_\d+d", None, "近{w}天的消费金额"),
    (r"gap_mean_days", None, "平常两次购买之间的天数"),
    (r"gap_std_days", None, "购买间隔的不规律程度（标准差）"),
    (r"weekend_share", None, "近{w}天周六、周日下单的占比"),
    (r"evening_share", None, "近{w}天{h}:00以后下单的占比"),
    (r"mean_order_hour", None, "近{w}天通常的下单时间"),
    (r"distinct_categories_\d+d", None, "近{w}天购买过的品类数"),
    (r"top_category_share_\d+d", None, "近{w}天主要品类的消费占比"),
    (r"refund_share_\d+d", None, "近{w}天退款占消费的比例"),
    (r"category_share_.+", r"share of spend on (?P<item>.+) in the last \d+ days", "近{w}天在{item}上的消费占比"),
    (r"category_recency_.+", r"days since (?P<item>.+) was last bought", "距上次购买{item}的天数"),
    (r"category_orders_\d+d_.+", r"orders with (?P<item>.+) in the last \d+ days", "近{w}天含{item}的订单数"),
    (r"category_order_share_.+", r"share of orders with (?P<item>.+) in the last \d+ days", "近{w}天含{item}的订单占比"),
    (r"channel_share_.+", r"share of orders through (?P<item>.+) in the last \d+ days", "近{w}天通过{item}下单的占比"),
    (r"distinct_stores_\d+d", None, "近{w}天去过的门店数"),
    (r"top_store_share_\d+d", None, "近{w}天在常去门店的订单占比"),
    (r"events_\d+d", None, "近{w}天的互动次数（访问、点击、用券）"),
    (r"event_recency_days", None, "距上次互动（访问、点击、用券）的天数"),
    (r"event_.+_\d+d", r"(?P<item>.+) events in the last \d+ days", "近{w}天的{item}事件次数"),
    (r"tenure_days", None, "成为客户以来的天数（注册或首次购买起）"),
    (r"avg_order_value_\d+d", None, "近{w}天的平均客单价"),
    (r"recency_gap_ratio", None, "距上次购买的天数与平常购买间隔之比"),
    (r"spend_trend_90d", None, "消费趋势：近90天对比之前90天（-1 全在之前，+1 全在近期）"),
    (r"frequency_trend_90d", None, "订单趋势：近90天对比之前90天（-1 全在之前，+1 全在近期）"),
    (r"btyd_expected_orders_\d+d", r"expected orders in the next (?P<item>\d+) days.*", "按购买节奏预计未来{item}天的订单数"),
    (r"btyd_p_alive", None, "按购买节奏估计仍在购买的概率"),
    (r"btyd_expected_order_value", None, "按本人及全体客户的客单价预计的下一单金额"),
    (r"attr_.+", r"customer attribute '(?P<item>.+)'", "客户属性“{item}”"),
]
_COMPILED = [(re.compile(n), re.compile(d) if d else None, t) for n, d, t in ZH]
LANGUAGES = ("en", "zh")


def translated(feature: Feature, lang: str) -> str | None:
    """The feature's description in `lang`, or None when there is no translation."""
    if lang == "en":
        return feature.description
    if lang != "zh" or feature.stage == "table":
        return None
    for name_re, desc_re, template in _COMPILED:
        if not name_re.fullmatch(feature.name):
            continue
        item = ""
        if desc_re is not None:
            m = desc_re.fullmatch(feature.description)
            if m is None:
                continue
            item = m.group("item")
        hour = re.search(r"from (\d+):00", feature.description)
        return template.format(w=feature.window_days or "", h=hour.group(1) if hour else "", item=item)
    return None


def description(feature: Feature, lang: str = "en") -> str:
    """The feature's description in `lang`, falling back to the declared (English) one."""
    return translated(feature, lang) or feature.description
