"""The feature contract without a model: definition hashes follow a feature's meaning (its window too, where
its name does not show it), and a snapshot's definitions are compared with a model's, naming what differs.
The service's side (a model refused after `features.windows` changed and features were published again) is
in tests/test_service.py, on a trained model."""

from __future__ import annotations

import dataclasses

from crmscore.features.contract import breach, refusal, snapshot_meta
from crmscore.features.definitions import FeatureSet, Vocabulary, declare

VOCAB = Vocabulary(("Kids", "Home"), ("web",), ("visit",))
# the features whose name carries no window, although the window changes what they count
UNWINDOWED = ["weekend_share", "evening_share", "mean_order_hour", "category_share_kids", "category_share_home",
              "channel_share_web"]


def _set(windows):
    return FeatureSet(tuple(declare(windows, VOCAB)), VOCAB, tuple(windows))


def test_a_window_change_changes_the_hash_of_features_named_without_it():
    old, new = _set([30, 90, 180, 365]), _set([30, 90, 180])
    for name in UNWINDOWED:
        assert old.get(name) is not None and new.get(name) is not None
        assert old.get(name).definition_hash != new.get(name).definition_hash, name
    assert old.get("category_share_kids").sql == new.get("category_share_kids").sql  # the SQL alone misses it
    for name in ("recency_days", "frequency_30d", "monetary_90d", "gap_mean_days"):  # untouched by the change
        assert old.get(name).definition_hash == new.get(name).definition_hash, name
    assert old.version != new.version


def test_the_hash_follows_meaning_not_wording_and_survives_saving():
    fs = _set([30, 90, 365])
    f = fs.get("weekend_share")
    assert dataclasses.replace(f, description="weekend orders", group="other").definition_hash == f.definition_hash
    for change in ({"sql": f"({f.sql}) * 2"}, {"unit": "ratio"}, {"dtype": "int"}, {"window_days": 90}):
        assert dataclasses.replace(f, **change).definition_hash != f.definition_hash, change
    assert FeatureSet.from_dict(fs.to_dict()).definitions() == fs.definitions()
    recency = fs.get("recency_days").definition_hash
    assert fs.definitions(["recency_days", "no_such_feature"]) == {"recency_days": recency}


def test_refusal_names_the_model_the_features_and_what_to_run():
    old, new = _set([30, 90, 180, 365]), _set([30, 90, 180])
    needed = old.definitions(["recency_days", "weekend_share", "category_share_kids", "frequency_365d"])
    meta = {"as_of": "2025-01-01", "config": "shop", **snapshot_meta(new.definitions(), new.windows)}
    found = breach(needed, meta["feature_definitions"])
    assert found.changed == ("weekend_share", "category_share_kids") and found.missing == ("frequency_365d",)
    why = refusal("churn", "3", "churn", needed, list(old.windows), meta)
    assert why.startswith("churn v3 ")
    assert "weekend_share, category_share_kids defined differently" in why and "frequency_365d not published" in why
    assert "crmscore train churn" in why and "crmscore features publish" in why and "[30, 90, 180, 365]" in why
    assert "\n" not in why
    # the same definitions: served; nothing published yet: nothing to check; an old snapshot: publish again
    same = {"as_of": "2025-01-01", **snapshot_meta(old.definitions(), old.windows)}
    assert refusal("churn", "3", "churn", needed, list(old.windows), same) is None
    assert refusal("churn", "3", "churn", needed, list(old.windows), {}) is None
    assert "published without feature definitions" in refusal("churn", "3", "churn", needed, [30], {"as_of": "x"})
