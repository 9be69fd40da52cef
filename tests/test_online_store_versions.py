"""The Redis online store publishes versioned snapshots (a real redis-server): readers switch to a new snapshot
in one step, customers left out of it disappear, and old versions are deleted."""

from __future__ import annotations

import pandas as pd


def test_publish_switches_readers_at_once_drops_left_customers_and_cleans_old_versions(redis_url):
    import redis

    from crmscore.features.store import REDIS_PREFIX, RedisStore

    client = redis.Redis.from_url(redis_url)
    client.set(REDIS_PREFIX + "LEGACY", '{"recency_days": 1}')  # published before versions existed
    reader = RedisStore(redis_url, version_ttl=0)
    assert reader.get("LEGACY") == {"recency_days": 1}
    writer = RedisStore(redis_url)
    first = pd.DataFrame({"customer_id": ["A", "B", "C"], "recency_days": [1, 2, 3]})
    writer.publish(first, {"as_of": "2025-01-01"}, timelines=[("A", '{"days": []}')])
    assert reader.get_many(["A", "B", "C", "LEGACY"]) == {c: {"recency_days": r} for c, r in zip("ABC", (1, 2, 3))}
    assert reader.meta() == {"as_of": "2025-01-01"} and reader.get_timeline("A") == {"days": []}
    assert not client.keys(REDIS_PREFIX + "*")  # the unversioned snapshot was replaced and deleted

    second = pd.DataFrame({"customer_id": ["B", "C", "D"], "recency_days": [20, 30, 40]})
    writer.publish(second, {"as_of": "2025-02-01"})
    assert reader.get_many(["A", "B", "C", "D"]) == {c: {"recency_days": r} for c, r in zip("BCD", (20, 30, 40))}
    assert reader.meta() == {"as_of": "2025-02-01"} and reader.get_timeline("A") is None
    assert sorted(reader.sample_ids(10)) == ["B", "C", "D"]
    assert client.keys("crmscore:v1:*")  # the replaced version stays until the next publish (readers in flight)

    writer.publish(second.assign(recency_days=[5, 6, 7]), {"as_of": "2025-03-01"})
    assert not client.keys("crmscore:v1:*") and client.keys("crmscore:v2:*") and client.keys("crmscore:v3:*")
    assert reader.get("D") == {"recency_days": 7}
