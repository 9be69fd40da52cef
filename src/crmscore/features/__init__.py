"""Point-in-time customer features: declarations and builders."""

from crmscore.features.build import (
    as_of_timestamp,
    build_features,
    build_training_set,
    feature_set_for,
    feature_sql,
)
from crmscore.features.definitions import Feature, FeatureSet, Vocabulary, declare
from crmscore.features import spark as _spark  # noqa: F401,E402 (registers the Spark builder; PySpark loads lazily)

__all__ = ["Feature", "FeatureSet", "Vocabulary", "declare", "as_of_timestamp", "build_features",
           "build_training_set", "feature_set_for", "feature_sql"]
