"""Publishing the feature snapshot the service scores customers by id from.

Besides the features, a publish writes what the operations page shows: each customer's purchase
timeline (purchase days of the last 12 months) and the segments of this snapshot and the previous one,
with counts and transitions in the snapshot's meta. The previous snapshot is the last one published
with an earlier cutoff; on the first publish (or a re-publish of the same cutoff with nothing earlier
kept) it is recomputed from the data `compare_days` (30) before the cutoff.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from typing import Any

import pandas as pd

from crmscore.data.loader import CustomerData
from crmscore.errors import FeatureContractError
from crmscore.features.build import DUCKDB, as_of_timestamp, build_features, feature_set_for
from crmscore.features.contract import refusal, snapshot_meta
from crmscore.features.definitions import FeatureSet
from crmscore.features.segments import RFMScorer
from crmscore.features.store import RedisStore, SqliteStore
from crmscore.models.bundle import TrainedModel
from crmscore.settings import Settings

log = logging.getLogger(__name__)


def served_models(settings: Settings) -> list[tuple[str, str, TrainedModel]]:
    """(name, version, model) of every model the service will load, read from the registry, so that every
    column they need is published and a feature they read under another definition is reported.

    A registry that cannot be read fails the publish (FeatureContractError): publishing the data's default
    set instead would leave out, or redefine, the served models' features without a word."""
    from crmscore.models import registry
    from crmscore.scoring.online import parse_specs
    from crmscore.scoring.runtime import discover_specs

    try:
        registry.configure(settings)  # CRMSCORE_SERVE_MODELS skips discover_specs, which would configure it
        specs = (parse_specs(settings.serve_models, settings.serve_alias) if settings.serve_models
                 else discover_specs(settings.serve_alias))
        out = []
        for name, ref in specs:
            bundle, mv = registry.load_bundle(name, ref)
            out.append((name, str(mv.version), bundle))
        return out
    except Exception as exc:  # noqa: BLE001  (any failure to read them: the publish stops, saying why)
        first = (str(exc).splitlines() or [""])[0][:200]
        raise FeatureContractError(
            f"features publish: cannot read the served models' feature sets from the registry at "
            f"{settings.registry_uri or settings.tracking_uri} ({type(exc).__name__}: {first}); nothing was "
            f"published: make the registry reachable (CRMSCORE_TRACKING_URI) or fix CRMSCORE_SERVE_MODELS, then "
            f"publish again") from exc


def merged(base: FeatureSet, others: list[FeatureSet]) -> FeatureSet:
    """The data's feature set plus the features of `others` it lacks. A name in both keeps the data's own
    definition: the snapshot is the config's; a model that reads it differently is refused by the service
    (crmscore.features.contract), not silently fed the other definition."""
    seen = {f.name for f in base.features}
    feats = list(base.features)
    for fs in others:
        for f in fs.features:
            if f.name not in seen and f.stage != "table":
                feats.append(f)
                seen.add(f.name)
    return FeatureSet(tuple(feats), base.vocabulary, base.windows, base.evening_hour)


def new_snapshot_meta(config_name: str, as_of: Any, rfm: RFMScorer, customers: int, definitions: dict[str, str],
                      windows: Any, served: list[tuple[str, str, TrainedModel]], **extra: Any) -> dict[str, Any]:
    """A new snapshot's meta (as-of date, RFM scale, count, the feature contract's definitions and windows), on
    either engine; a served model the service will refuse on it is warned about now, at the publish."""
    meta = {"as_of": str(as_of), "rfm": rfm.to_dict(),
            "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "customers": customers, "config": config_name, **extra, **snapshot_meta(definitions, windows)}
    for name, version, bundle in served:
        why = refusal(name, version, bundle.task, bundle.feature_definitions(), list(bundle.feature_set.windows), meta)
        if why:
            log.warning("the service will not serve this model on the new snapshot: %s", why)
    return meta


def publish_snapshot(data: CustomerData, as_of: Any, settings: Settings, *, compare_days: int = 30) -> tuple[int, str]:
    as_of = as_of or data.default_as_of()
    served = served_models(settings)
    fs = merged(feature_set_for(data, as_of), [bundle.feature_set for _, _, bundle in served])
    frame = build_features(data, as_of, fs)
    rfm = RFMScorer(data.config.segments.rfm_window_days).fit(frame)  # the scale the snapshot's segments use
    meta = new_snapshot_meta(data.config.name, as_of, rfm, len(frame),
                             fs.definitions([c for c in frame.columns if fs.get(c) is not None]), fs.windows, served)
    sqlite = SqliteStore(settings.home / "online_store.sqlite")
    current = frame[["customer_id", "rfm_segment", "lifecycle_stage"]].astype({"customer_id": str})
    previous, prev_as_of, source = previous_segments(sqlite, data, as_of, fs, compare_days)
    meta["segments"] = segment_summary(current, previous, str(as_of), prev_as_of, source)
    timelines = list(purchase_timelines(data, as_of)) if "lines" in data.tables else None
    meta["timeline_days"] = TIMELINE_DAYS if timelines is not None else 0
    targets: list[SqliteStore | RedisStore] = [sqlite]
    if settings.redis_url:
        targets.append(RedisStore(settings.redis_url))
    for t in targets:
        t.publish(frame, meta, timelines=timelines, segments={"current": current, "previous": previous})
    return len(frame), ", ".join(str(getattr(t, "path", settings.redis_url)) for t in targets)


# -- for the operations page -------------------------------------------------------------------------
TIMELINE_DAYS = 365


def purchase_timelines(data: CustomerData, as_of: Any, days: int = TIMELINE_DAYS) -> Iterable[tuple[str, str]]:
    """(customer id, JSON) per customer with a purchase in the `days` before as_of: {"days": [[date,
    orders, amount], ...]} (one entry per purchase day, oldest first; amount net of refunds), "from", "to"."""
    cut = as_of_timestamp(as_of)
    start = cut - pd.Timedelta(days=days)
    df = data.con.execute(
        f"SELECT customer_id, CAST(ts AS DATE) AS day, COUNT(DISTINCT order_key) AS orders, SUM(amount) AS amount "
        f"FROM lines WHERE ts < {DUCKDB.timestamp(cut)} AND ts >= {DUCKDB.timestamp(start)} "
        f"GROUP BY 1, 2 ORDER BY 1, 2").df()
    frm, to = str(start.date()), str((cut - pd.Timedelta(days=1)).date())
    for cid, part in df.groupby("customer_id", sort=False):
        entries = [[str(pd.Timestamp(d).date()), int(o), round(float(a), 2)]
                   for d, o, a in zip(part["day"], part["orders"], part["amount"])]
        yield str(cid), json.dumps({"from": frm, "to": to, "days": entries}, separators=(",", ":"))


def previous_segments(store: SqliteStore, data: CustomerData, as_of: Any, fs: FeatureSet, compare_days: int
                      ) -> tuple[pd.DataFrame | None, str | None, str | None]:
    """The segments to compare this snapshot with: (frame, its as_of, "previous_publish" | "recomputed")."""
    cut = as_of_timestamp(as_of)
    meta = store.meta()
    for which, key in (("current", "as_of"), ("previous", None)):
        when = meta.get("as_of") if key else (meta.get("segments") or {}).get("previous_as_of")
        if when and pd.Timestamp(when) < cut:
            seg = store.segment_snapshot(which)
            if seg is not None and len(seg):
                return seg, str(pd.Timestamp(when)), "previous_publish"
    earlier = cut - pd.Timedelta(days=compare_days)
    if earlier <= data.ts_range()[0]:
        return None, None, None
    try:
        old = build_features(data, earlier, fs)
    except Exception as exc:  # noqa: BLE001  (the comparison is a convenience; the publish goes on)
        log.warning("could not compute the segments of %s for the comparison: %s", earlier.date(), exc)
        return None, None, None
    return old[["customer_id", "rfm_segment", "lifecycle_stage"]].astype({"customer_id": str}), str(earlier), "recomputed"


def segment_summary(current: pd.DataFrame, previous: pd.DataFrame | None, as_of: str, prev_as_of: str | None,
                    source: str | None) -> dict[str, Any]:
    """Counts per RFM segment and lifecycle stage (now and before) and the transitions between the two,
    as [from, to, customers] (from None: not a customer before; to None: gone)."""
    out: dict[str, Any] = {"as_of": as_of, "previous_as_of": prev_as_of, "previous_source": source}
    for col, key in (("rfm_segment", "rfm"), ("lifecycle_stage", "lifecycle")):
        out[key] = {str(k): int(v) for k, v in current[col].value_counts().items()}
        if previous is None:
            out[f"{key}_previous"], out[f"{key}_transitions"] = None, None
            continue
        out[f"{key}_previous"] = {str(k): int(v) for k, v in previous[col].value_counts().items()}
        both = current[["customer_id", col]].merge(previous[["customer_id", col]], on="customer_id", how="outer",
                                                   suffixes=("_to", "_from"))
        counts = both.groupby([f"{col}_from", f"{col}_to"], dropna=False).size()
        out[f"{key}_transitions"] = [[None if pd.isna(a) else str(a), None if pd.isna(b) else str(b), int(n)]
                                     for (a, b), n in counts.items()]
    return out
