"""Point-in-time customer features: declarations and builders."""

from crmscore.features.build import (
    as_of_timestamp,
    build_features,
    build_training_set,
    feature_set_for,
    feature_sql,
)
from crmscore.features.definitions import Feature, FeatureSet, Vocabulary, declare

__all__ = ["Feature", "FeatureSet", "Vocabulary", "declare", "as_of_timestamp", "build_features",
           "build_training_set", "feature_set_for", "feature_sql"]
