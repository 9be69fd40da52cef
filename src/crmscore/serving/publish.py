"""Publishing the feature snapshot the service scores customers by id from."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from crmscore.data.loader import CustomerData
from crmscore.features.build import build_features, feature_set_for
from crmscore.features.definitions import FeatureSet
from crmscore.segments import RFMScorer
from crmscore.serving.store import RedisStore, SqliteStore
from crmscore.settings import Settings

log = logging.getLogger(__name__)


def served_feature_sets(settings: Settings) -> list[FeatureSet]:
    """Feature sets of the models the service will load (so every column they need is published)."""
    from crmscore.serving.engine import parse_specs
    from crmscore.serving.runtime import discover_specs

    try:
        from crmscore.models import registry

        specs = (parse_specs(settings.serve_models, settings.serve_alias) if settings.serve_models
                 else discover_specs(settings.serve_alias))
        return [registry.load_bundle(name, ref)[0].feature_set for name, ref in specs]
    except Exception as exc:  # noqa: BLE001  (no registry: publish the data's own feature set)
        log.warning("could not read the served models' feature sets (%s); publishing the default set", exc)
        return []


def merged(base: FeatureSet, others: list[FeatureSet]) -> FeatureSet:
    seen = {f.name for f in base.features}
    feats = list(base.features)
    for fs in others:
        for f in fs.features:
            if f.name not in seen and f.stage != "table":
                feats.append(f)
                seen.add(f.name)
    return FeatureSet(tuple(feats), base.vocabulary, base.windows, base.evening_hour)


def publish_snapshot(data: CustomerData, as_of: Any, settings: Settings) -> tuple[int, str]:
    as_of = as_of or data.ts_range()[1].normalize() + dt.timedelta(days=1)
    fs = merged(feature_set_for(data, as_of), served_feature_sets(settings))
    frame = build_features(data, as_of, fs)
    rfm = RFMScorer(data.config.segments.rfm_window_days).fit(frame)  # the scale the snapshot's segments use
    meta = {"as_of": str(as_of), "rfm": rfm.to_dict(), "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "customers": len(frame), "config": data.config.name}
    targets = [SqliteStore(settings.home / "online_store.sqlite")]
    if settings.redis_url:
        targets.append(RedisStore(settings.redis_url))
    for t in targets:
        t.publish(frame, meta)
    return len(frame), ", ".join(str(getattr(t, "path", settings.redis_url)) for t in targets)
