"""The floor for bench/serving.py: the smallest BentoML 1.4 service answering the scoring request.

One @bentoml.service class with one async @bentoml.api at the same route as the real service, taking the
same request body (so the same bytes are received and parsed) and returning a constant JSON body, already
serialised (as the real `score` returns its body). It runs with the real service's settings: worker count
(BENCH_FLOOR_WORKERS), a 10 s traffic timeout, access log off, no OpenTelemetry spans for /v1/ routes.

    bentoml serve floor_service:Floor --working-dir bench --host 127.0.0.1 --port 3100
"""

from __future__ import annotations

import json
import os
from typing import Any

import bentoml
from starlette.responses import Response

WORKERS = int(os.environ.get("BENCH_FLOOR_WORKERS", "1"))
CONSTANT = json.dumps({"request_id": "floor", "model": "churn", "results": [{"customer_id": "C0", "score": 0.5}]})


@bentoml.service(name="floor", workers=WORKERS, traffic={"timeout": 10}, http={"port": 3100},
                 logging={"access": {"enabled": False}}, tracing={"excluded_urls": ["/v1/"]})
class Floor:
    @bentoml.api(route="/v1/score")
    async def score(self, model: str, customers: list[dict[str, Any]], explain: bool = True,
                    top_k: int = 5) -> dict:
        return Response(CONSTANT, media_type="application/json")  # type: ignore[return-value]
