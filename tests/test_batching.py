"""The service's adaptive batching (crmscore.serving.batching.RequestBatcher) on a real event loop: how requests
are grouped into batches. That each request gets the answer it would get alone is tested with the real engine
in test_service.py."""

from __future__ import annotations

import asyncio

from crmscore.serving.batching import RequestBatcher
from crmscore.scoring.online import ScoreJob


def _job(n: int, customers: int = 1) -> ScoreJob:
    return ScoreJob("churn", [{"customer_id": f"C{n}-{k}"} for k in range(customers)], False, 0, f"r{n}")


def _recorder(batches: list[list[str]]):
    def score_many(jobs: list[ScoreJob]) -> list:
        batches.append([j.request_id for j in jobs])
        return [[{"request_id": j.request_id, "customers": len(j.customers)}] for j in jobs]
    return score_many


def test_requests_arriving_on_consecutive_turns_share_a_batch_and_a_lone_one_waits_for_no_one():
    batches: list[list[str]] = []

    async def run():
        batcher = RequestBatcher(_recorder(batches))
        futures = []
        for n in range(3):  # one request a turn of the loop, as connections become readable one after another
            futures.append(batcher.submit(_job(n)))
            await asyncio.sleep(0)
        first = await asyncio.gather(*futures)
        lone = await asyncio.wait_for(batcher.submit(_job(9)), timeout=1)
        return first, lone

    first, lone = asyncio.run(run())
    assert batches == [["r0", "r1", "r2"], ["r9"]]
    assert [out[0]["request_id"] for out in first] == ["r0", "r1", "r2"] and lone[0]["request_id"] == "r9"


def test_a_steady_trickle_is_flushed_after_a_few_turns_and_a_batch_stops_at_max_rows():
    batches: list[list[str]] = []

    async def trickle():
        batcher = RequestBatcher(_recorder(batches))
        futures = []
        for n in range(20):
            futures.append(batcher.submit(_job(n)))
            await asyncio.sleep(0)
        await asyncio.gather(*futures)

    asyncio.run(trickle())
    assert [r for b in batches for r in b] == [f"r{n}" for n in range(20)]  # every request once, in order
    # a trickle is flushed after a few turns (the first batch, nothing in flight); a later batch also takes what
    # arrived while the one before was being scored in the batcher's thread
    assert len(batches) > 1 and len(batches[0]) <= RequestBatcher.MAX_WAITS + 1

    batches.clear()

    async def burst():
        batcher = RequestBatcher(_recorder(batches), max_rows=10)
        return await asyncio.gather(*(batcher.submit(_job(n, customers=4)) for n in range(5)))

    outs = asyncio.run(burst())
    assert [len(b) for b in batches] == [2, 2, 1]  # 4 + 4 rows fit under 10, a third request would not
    assert [o[0]["customers"] for o in outs] == [4] * 5
