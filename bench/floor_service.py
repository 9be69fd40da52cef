"""The floor for bench/serving.py: the smallest BentoML 1.4 service answering the scoring request.

One @bentoml.service class with one @bentoml.api at the same route as the real service, taking the same
request body (so the same bytes are received and parsed) and returning a constant dict. It runs with the
real service's settings: worker count (BENCH_FLOOR_WORKERS), a 10 s traffic timeout, access log off, and
a synchronous API method (run in BentoML's thread pool, as the real `score` is today); with
BENCH_FLOOR_ASYNC=1 an `async def` method instead (for a service whose `score` is async).

    bentoml serve floor_service:Floor --working-dir bench --host 127.0.0.1 --port 3100
"""

from __future__ import annotations

import os
from typing import Any

import bentoml

WORKERS = int(os.environ.get("BENCH_FLOOR_WORKERS", "1"))
ASYNC = os.environ.get("BENCH_FLOOR_ASYNC", "") == "1"
CONSTANT = {"request_id": "floor", "model": "churn", "results": [{"customer_id": "C0", "score": 0.5}]}


@bentoml.service(name="floor", workers=WORKERS, traffic={"timeout": 10}, http={"port": 3100},
                 logging={"access": {"enabled": False}})
class Floor:
    if ASYNC:
        @bentoml.api(route="/v1/score")
        async def score(self, model: str, customers: list[dict[str, Any]], explain: bool = True,
                        top_k: int = 5) -> dict:
            return CONSTANT
    else:
        @bentoml.api(route="/v1/score")
        def score(self, model: str, customers: list[dict[str, Any]], explain: bool = True, top_k: int = 5) -> dict:
            return CONSTANT
