"""The feature declarations stay in the SQL both engines read alike (crmscore.features.dialect)."""

from __future__ import annotations

import pytest

from crmscore.features.definitions import Vocabulary, declare, declare_category_history
from crmscore.features.dialect import lint_declaration

# names chosen to look like the traps: quotes, slashes and decimals inside literals must not trip the lint
ODD = Vocabulary(categories=('Fruit "fresh" 1.5 kg / day', "O'Brien's"), channels=("web/app",),
                 event_types=("coupon 2.0",), attributes=(("Loyalty Tier", "text"), ('say "hi"', "number")),
                 history_attributes=(("tier.level", "text"),))


def _declared():
    feats = declare([30, 90, 180, 365], ODD, btyd_horizons=[30, 90])
    feats += declare_category_history(list(ODD.categories), [30, 365])
    # btyd's sql names a fitted quantity and an attribute's is its column name (quoted by the build): not SQL
    return [f for f in feats if f.stage not in ("btyd", "customers", "attribute_history")]


@pytest.mark.parametrize("feature", _declared(), ids=lambda f: f.name)
def test_every_declaration_is_portable(feature):
    assert lint_declaration(feature.sql) == []


@pytest.mark.parametrize("sql, trap", [
    ("SUM(amount) / COUNT(*)", "'/'"),
    ("AVG(CASE WHEN is_weekend THEN 1.0 ELSE 0 END)", "decimal literal"),
    ("SUM(x) * .5 / NULLIF(COUNT(*), 0)", "decimal literal"),
    ('"Loyalty Tier"', "quoted identifier"),
    ("h.`tier`", "quoted identifier"),
    ("MIN(epoch(ts))", "engine-specific"),
    ("SUM(CASE WHEN dayofweek(ts) IN (0, 6) THEN 1 ELSE 0 END)", "engine-specific"),
    ("MIN(CASE WHEN ts < TIMESTAMP '2024-01-01' THEN 1 END)", "engine-specific"),
    ("CAST(x AS DOUBLE)::INT", "engine-specific"),
])
def test_lint_rejects_constructs_that_differ(sql, trap):
    problems = lint_declaration(sql)
    assert len(problems) == 1 and trap in problems[0], problems


def test_guarded_division_and_literals_pass():
    assert lint_declaration("SUM(CASE WHEN category = 'a/b 1.5 \"x\"' THEN spend ELSE 0 END) / NULLIF(SUM(spend), 0)") == []
    assert lint_declaration("x /\n  nullif(y, 0)") == []
